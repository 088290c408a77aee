"""Seconds per Gatys optimisation step at 256 and 512 px (CPU, and each GPU that is present), and
how much the style loss falls in N steps.

    python benchmarks/stylize_speed.py                       # default feature net, cpu (+ cuda)
    python benchmarks/stylize_speed.py --steps 50 --sizes 256 --devices cpu
    python benchmarks/stylize_speed.py --content C.jpg --style S.jpg --model vgg19.imagenet

Images: --content/--style, else the bundled samples/chelsea.png and samples/style_hubble.jpg (the
classic pair: --content ../shared/data/images/tubingen.jpg --style ../shared/data/images/starry_night.jpg).
The first 2 steps of each run are warm-up and are not timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def default_images() -> tuple[Path, Path]:
    return ROOT / "samples" / "chelsea.png", ROOT / "samples" / "style_hubble.jpg"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--content", type=Path)
    ap.add_argument("--style", type=Path)
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run (after 2 warm-up steps)")
    ap.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam"])
    ap.add_argument("--devices", default=None, help="comma list (default: cpu, plus cuda when present)")
    ap.add_argument("--model", default=None, help="feature weights name (default: the stylize default)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch
    from PIL import Image

    from dlcli import catalog
    from dlcli.device import Runtime
    from dlcli.tasks.stylize import StylizeOptions, load_feature_net, pil_to_tensor, resize_long_side, run_gatys
    catalog.load()  # the registry's names (the registry itself imports no task)

    if args.threads:
        torch.set_num_threads(args.threads)
    content_path, style_path = default_images()
    content_path = args.content or content_path
    style_path = args.style or style_path
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    fn = load_feature_net(args.model)
    rows = []
    for dev in devices:
        rt = Runtime.create(dev, "fp32", seed=0)
        net = rt.place(fn.net)
        for size in (int(s) for s in args.sizes.split(",")):
            content = resize_long_side(Image.open(content_path).convert("RGB"), size)
            style = resize_long_side(Image.open(style_path).convert("RGB"), size)
            c, s = rt.to(pil_to_tensor(content)), rt.to(pil_to_tensor(style))
            warm = StylizeOptions(steps=2, optimizer=args.optimizer)
            run_gatys(net, fn.norm, c, [s], warm, runtime=rt)
            opts = StylizeOptions(steps=args.steps, optimizer=args.optimizer)
            t0 = time.perf_counter()
            _, stats = run_gatys(net, fn.norm, c, [s], opts, runtime=rt)
            wall = time.perf_counter() - t0
            row = {
                "device": str(rt.device),
                "device_name": torch.cuda.get_device_name(rt.device) if rt.device.type == "cuda" else "cpu",
                "threads": torch.get_num_threads(),
                "size": f"{content.size[0]}x{content.size[1]}",
                "optimizer": args.optimizer,
                "steps": args.steps,
                "s_per_step": round(stats.seconds_per_step, 4),
                "style_loss_start": round(stats.initial["style"], 3),
                "style_loss_end": round(stats.final["style"], 3),
                "style_loss_reduction": round(stats.initial["style"] / max(stats.final["style"], 1e-12), 2),
                "content_loss_end": round(stats.final["content"], 4),
                "wall_s": round(wall, 2),
            }
            rows.append(row)
            if not args.json:
                print(f"{row['device_name']:>24} {row['size']:>9} {row['s_per_step']:8.4f} s/step  "
                      f"style {row['style_loss_start']:.3f} -> {row['style_loss_end']:.3f} "
                      f"(x{row['style_loss_reduction']} lower in {args.steps} steps)", flush=True)
    if args.json:
        print(json.dumps({"weights": fn.name, "content": str(content_path), "style": str(style_path), "rows": rows},
                         indent=2))
    elif len(rows) > 1:
        cpu = {r["size"]: r["s_per_step"] for r in rows if r["device"] == "cpu"}
        for r in rows:
            if r["device"] != "cpu" and r["size"] in cpu:
                print(f"speed-up of {r['device_name']} over cpu at {r['size']}: x{cpu[r['size']] / r['s_per_step']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
