"""How well the domain check (dlcli/domain.py) tells a model's own world from other inputs: the
false-alarm rate on held-out data of the domain and the hit rate (a warning) on everything else,
with the closest value of each statistic to its threshold (the margin), and the check's cost per
image against the bundled model's forward pass on the same images (measured in the same run).

    python benchmarks/domain_check.py [--scenes 500] [--mnist DIR] [--photos DIR]

--mnist: the folder with MNIST's IDX files (default ../shared/data/MNIST/raw when present; the whole
test set is checked). --photos: a folder of further photos to count hits on (e.g. the images of
scikit-image's skimage/data); samples/ is always used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlcli import domain  # noqa: E402
from dlcli.data import scenes  # noqa: E402

PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "style_hubble.jpg", "style_ihc.jpg"]


def load(path: Path, mode: str) -> Image.Image:
    from dlcli.media import load_image

    return load_image(str(path), mode=mode)


def rate(name: str, dom: domain.Domain, images: list[Image.Image], *, want_fit: bool,
         names: list[str] | None = None) -> list[domain.DomainCheck]:
    checks = [domain.check(dom, im) for im in images]
    bad = sum(c.fits != want_fit for c in checks)
    what = "false alarms" if want_fit else "missed (no warning)"
    kind = "false-alarm rate" if want_fit else "hit rate"
    value = bad / len(checks) if want_fit else 1 - bad / len(checks)
    print(f"  {name:38} {len(checks):6d} images  {kind} {value:7.2%}  ({bad} {what})")
    if names and bad:
        print("    " + ", ".join(n for n, c in zip(names, checks) if c.fits != want_fit))
    return checks


def margins(dom: domain.Domain, checks: list[domain.DomainCheck]) -> None:
    keys = checks[0].stats.keys()
    worst = {k: (min if k not in ("midtones",) else max)(c.stats[k] for c in checks) for k in keys}
    print("    worst case: " + ", ".join(f"{k} {v:.4f}" for k, v in worst.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=500)
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "MNIST" / "raw")
    parser.add_argument("--photos", type=Path, default=None)
    args = parser.parse_args()

    photos_rgb = [load(ROOT / "samples" / p, "RGB") for p in PHOTOS]
    photos_l = [load(ROOT / "samples" / p, "L") for p in PHOTOS]
    extra = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")) if args.photos else []
    scene_images = [Image.fromarray(scenes.make_scene(scenes.TEST_SEED, i).image) for i in range(args.scenes)]

    print("scenes (fasterrcnn_small.scenes, fcn_small.scenes, nic.scenes)")
    t0 = time.perf_counter()
    held = rate(f"held-out scenes (test seed {scenes.TEST_SEED})", domain.DOMAINS["scenes"], scene_images, want_fit=True)
    check_s = (time.perf_counter() - t0) / len(scene_images)
    margins(domain.DOMAINS["scenes"], held)
    hits = rate("photos in samples/", domain.DOMAINS["scenes"], photos_rgb, want_fit=False)
    print("    " + ", ".join(f"{p}: {c.stats['explained']:.3f}/{c.stats['palette']:.4f}" for p, c in zip(PHOTOS, hits)))
    if extra:
        rate(f"photos in {args.photos}", domain.DOMAINS["scenes"], [load(p, "RGB") for p in extra], want_fit=False,
             names=[p.name for p in extra])

    print("digits (deepconvnet.mnist)")
    digits: list[Image.Image] = []
    if (args.mnist / "t10k-images-idx3-ubyte").exists() or (args.mnist / "t10k-images-idx3-ubyte.gz").exists():
        from dlcli.data.mnist import load_mnist

        x, _ = load_mnist(args.mnist, "test")
        digits = [Image.fromarray(a) for a in x.numpy()]
        held = rate("MNIST test set", domain.DOMAINS["digits"], digits, want_fit=True)
        margins(domain.DOMAINS["digits"], held)
    else:
        print(f"  (no MNIST files in {args.mnist}: pass --mnist DIR)")
    drawn = sorted((ROOT / "samples" / "digits").glob("*.png"))
    rate("drawn digits in samples/digits/", domain.DOMAINS["digits"], [load(p, "L") for p in drawn], want_fit=True)
    hits = rate("photos in samples/", domain.DOMAINS["digits"], photos_l, want_fit=False)
    print("    " + ", ".join(f"{p}: " + "/".join(f"{v:.3f}" for v in c.stats.values()) for p, c in zip(PHOTOS, hits)))
    if extra:
        rate(f"photos in {args.photos}", domain.DOMAINS["digits"], [load(p, "L") for p in extra], want_fit=False,
             names=[p.name for p in extra])

    # Cost: the check against the bundled scene detector's forward pass on the same 20 scenes.
    try:
        import torch

        from dlcli import catalog
        from dlcli.device import Runtime
        from dlcli.tasks import detect

        torch.set_num_threads(1)
        catalog.load()
        det = detect.load_detector(Runtime.create("cpu"), model="fasterrcnn_small.scenes", offline=True)
        few = scene_images[:20]
        t0 = time.perf_counter()
        for im in few:
            det.forward([det.transform(im)])
        forward_s = (time.perf_counter() - t0) / len(few)
        print(f"cost: check {check_s * 1e3:.2f} ms per scene, fasterrcnn_small.scenes forward {forward_s * 1e3:.1f} ms "
              f"(1 thread): the check adds {check_s / forward_s:.1%}")
    except Exception as exc:  # the weights may not be bundled in a partial checkout
        print(f"cost: check {check_s * 1e3:.2f} ms per scene (no forward-pass baseline: {exc})")


if __name__ == "__main__":
    main()
