"""The two offline ImageNet classifiers of the plain install, side by side in one run: what each
costs per image through `dl classify`'s pipeline, and what each answers on the sample photos.

EfficientNet-Lite2 (260 px) is the fallback of `dl classify` without a network; Lite0 (224 px) is
kept for speed. The two are timed alternately, `--repeats` times each, and the best of each is
kept (the minimum is the least disturbed by other processes on a shared machine); the ratio is
Lite2's time over Lite0's.

    python benchmarks/offline_classifiers.py --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("efficientnet_lite0.imagenet", "efficientnet_lite2.imagenet")
PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=24, help="images per timed pass (the sample photos, repeated)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()

    import torch

    from dlcli.device import Runtime
    from dlcli.tasks import classify

    if args.threads:
        torch.set_num_threads(args.threads)
    rt = Runtime.create("cpu", "fp32")
    photos = [str(ROOT / "samples" / p) for p in PHOTOS]
    inputs = (photos * (args.images // len(photos) + 1))[:args.images]
    loaded = {m: classify.load_classifier(rt, model=m, offline=True) for m in MODELS}
    for m, clf in loaded.items():  # warm-up, and what each answers
        report = classify.classify(photos, rt, classifier=clf, top_k=3)
        answers = "; ".join(f"{Path(r.source).stem}: " + ", ".join(f"{p.label} {p.probability:.3f}"
                                                                  for p in r.predictions) for r in report.images)
        print(f"{m}: {answers}")
    best = {m: float("inf") for m in MODELS}
    for _ in range(args.repeats):
        for m, clf in loaded.items():
            t0 = time.perf_counter()
            classify.classify(inputs, rt, classifier=clf, batch_size=args.batch_size)
            best[m] = min(best[m], time.perf_counter() - t0)
    for m in MODELS:
        print(f"{m}: {1000 * best[m] / len(inputs):.1f} ms per image (best of {args.repeats}, batch {args.batch_size}, "
              f"{torch.get_num_threads()} thread(s))")
    print(f"Lite2 / Lite0 time per image: {best[MODELS[1]] / best[MODELS[0]]:.2f}x")


if __name__ == "__main__":
    main()
