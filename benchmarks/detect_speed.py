"""Detector inference speed (images/s) on this CPU, fp32 vs bf16 autocast, in one run:
torchvision's Faster R-CNN MobileNetV3-Large-FPN and ResNet50-FPN-v2 with random-init weights
(shapes only: speed does not depend on the values, and nothing is downloaded) at a 640x480 input
(the models resize it to 800 px on the short side, as they do for real photos), and our small
Faster R-CNN on 128x128 scenes (the bundled weights when present, else random init).

    python benchmarks/detect_speed.py                     # all three, fp32 and bf16
    python benchmarks/detect_speed.py --models small --images 32 --threads 1 --json

The first forward pass of each (model, precision) is warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {
    "mobilenet": ("fasterrcnn_mobilenet_v3_large_fpn.coco", (480, 640)),
    "resnet50": ("fasterrcnn_resnet50_fpn_v2.coco", (480, 640)),
    "small": ("fasterrcnn_small.scenes", (128, 128)),
}


def load(key: str) -> tuple[object, str]:
    from dlcli import catalog
    from dlcli.weights import loader, registry
    catalog.load()  # the registry's names (the registry itself imports no task)

    name, _ = MODELS[key]
    if registry.lookup(name) is None:  # the small one before its weights are bundled
        from dlcli.models.detector_small import fasterrcnn_small

        return fasterrcnn_small().eval(), "random init (no bundled weights)"
    random_init = key != "small"
    loaded = loader.load_model(name, task="detect", random_init=random_init, offline=True)
    return loaded.model, "random init" if random_init else "bundled weights"


def inputs(key: str, n: int) -> list[object]:
    import torch

    if key == "small":
        from dlcli.data import scenes

        return [torch.from_numpy(scenes.make_scene(scenes.TEST_SEED, i).image).permute(2, 0, 1).float() / 255
                for i in range(n)]
    h, w = MODELS[key][1]
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, h, w, generator=g) for _ in range(n)]


def time_model(model: object, images: list[object], precision: str, batch: int) -> float:
    """Seconds for all `images` (after one warm-up batch)."""
    import torch

    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else None
    with torch.inference_mode():
        def run(chunk: list[object]) -> None:
            if ctx is None:
                model(chunk)
            else:
                with ctx():
                    model(chunk)

        run(images[:batch])
        t0 = time.perf_counter()
        for i in range(0, len(images), batch):
            run(images[i:i + batch])
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenet,resnet50,small", help="comma list of: " + ", ".join(MODELS))
    ap.add_argument("--images", type=int, default=4, help="timed images per torchvision model")
    ap.add_argument("--small-images", type=int, default=32, help="timed images for the small detector")
    ap.add_argument("--batch", type=int, default=1, help="images per forward pass")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    rows = []
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch}
    if not args.json:  # rows stream as they are measured (the ResNet50 ones take minutes on a CPU)
        print(f"torch {meta['torch']}, {meta['threads']} thread(s), batch {meta['batch']}")
        print(f"{'model':42} {'input':>8} {'prec':>5} {'img/s':>9} {'vs fp32':>8}", flush=True)
    for key in keys:
        model, weights = load(key)
        n = args.small_images if key == "small" else args.images
        images = inputs(key, n)
        base = None
        for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
            seconds = time_model(model, images, precision, args.batch)
            ips = n / seconds
            base = base or ips
            rows.append({"model": MODELS[key][0], "weights": weights, "input": "x".join(map(str, MODELS[key][1])),
                         "precision": precision, "images": n, "seconds": round(seconds, 3),
                         "images_per_s": round(ips, 3), "vs_fp32": round(ips / base, 3)})
            if not args.json:
                r = rows[-1]
                print(f"{r['model']:42} {r['input']:>8} {r['precision']:>5} {r['images_per_s']:>9.3f} "
                      f"{r['vs_fp32']:>8.2f}", flush=True)
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
