"""Overhead of `dl classify`'s pipeline against a bare torchvision forward, in the same run.

Both sides decode the same PNG files, apply the same transform, run the same nn.Module object on
the same device with the same batch size and compute dtype, and take softmax + top-5: the
difference is what dlcli adds (input expansion, error handling, batching by shape, result
objects). The two are timed alternately, `--repeats` times each, and the best of each is kept
(the minimum is the least disturbed by other processes on a shared machine).

Then fp32 against bf16 (autocast) through dlcli: images/s and whether the top-1 class agrees on
the sample photos.

    python benchmarks/classify_overhead.py                       # EfficientNet-Lite0 (offline)
    python benchmarks/classify_overhead.py --model resnet50.imagenet --random-init   # no download
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = [ROOT / "samples" / f for f in ("chelsea.png", "coffee.png", "astronaut.png")]


def bare_forward(paths: list[str], model, transform, runtime, batch_size: int) -> list[int]:
    """What a user would write with torchvision alone: open, transform, stack, forward, top-5."""
    import torch
    from PIL import Image

    top1: list[int] = []
    for i in range(0, len(paths), batch_size):
        batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i:i + batch_size]])
        x = batch.to(runtime.device)
        with torch.inference_mode(), runtime.autocast():
            probs = torch.softmax(model(x).float(), dim=1)
        top1.extend(probs.topk(5, dim=1).indices[:, 0].tolist())
    return top1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0.imagenet")
    ap.add_argument("--random-init", action="store_true", help="random weights (no download; top-1 then means nothing)")
    ap.add_argument("--images", type=int, default=48, help="images per timed run (the samples, repeated)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision-repeats", type=int, default=1,
                    help="timed passes per precision (bf16 on a CPU without native bf16 is slow)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    from dlcli import catalog
    from dlcli.device import Runtime
    from dlcli.tasks import classify
    catalog.load()  # the registry's names (the registry itself imports no task)

    paths = [str(SAMPLES[i % len(SAMPLES)]) for i in range(args.images)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, model {args.model}"
          f"{' (random init)' if args.random_init else ''}, {args.images} images, batch {args.batch_size}")

    rt = Runtime.create(args.device, "fp32")
    clf = classify.load_classifier(rt, model=args.model, random_init=args.random_init, offline=True)
    # warm-up both paths (allocator, oneDNN primitive caches)
    classify.classify(paths[: args.batch_size], rt, classifier=clf, batch_size=args.batch_size)
    bare_forward(paths[: args.batch_size], clf.model, clf.transform, rt, args.batch_size)

    # Wall time (best of N) and CPU time (process_time, summed over threads; much less disturbed
    # by other processes on a shared machine) for each side; the order alternates.
    ours, bare, ours_cpu, bare_cpu = [], [], [], []
    bare_top1: list[int] = []
    report = None
    for r in range(args.repeats):
        for side in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
            c0, t0 = time.process_time(), time.perf_counter()
            if side == "ours":
                report = classify.classify(paths, rt, classifier=clf, batch_size=args.batch_size)
            else:
                bare_top1 = bare_forward(paths, clf.model, clf.transform, rt, args.batch_size)
            rt.synchronize()
            (ours if side == "ours" else bare).append(time.perf_counter() - t0)
            (ours_cpu if side == "ours" else bare_cpu).append(time.process_time() - c0)
    ours_ips, bare_ips = args.images / min(ours), args.images / min(bare)
    same = [r.predictions[0].index for r in report.images] == bare_top1
    print(f"dlcli classify  : {ours_ips:8.2f} images/s (best of {args.repeats}: {min(ours):.3f} s wall, "
          f"{min(ours_cpu):.3f} s CPU)")
    print(f"bare torchvision: {bare_ips:8.2f} images/s (best of {args.repeats}: {min(bare):.3f} s wall, "
          f"{min(bare_cpu):.3f} s CPU)")
    print(f"overhead        : {(min(ours) / min(bare) - 1) * 100:+.1f}% wall time, "
          f"{(min(ours_cpu) / min(bare_cpu) - 1) * 100:+.1f}% CPU time (target <= 5%); "
          f"same top-1 on every image: {same}")

    # fp32 vs bf16 through dlcli
    results = {}
    for precision in ("fp32", "bf16"):
        rtp = Runtime.create(args.device, precision)
        clfp = classify.Classifier(clf.loaded, rtp)
        classify.classify(paths[: args.batch_size], rtp, classifier=clfp, batch_size=args.batch_size)
        best = min(_timed(lambda: classify.classify(paths, rtp, classifier=clfp, batch_size=args.batch_size))
                   for _ in range(args.precision_repeats))
        samples = classify.classify([str(p) for p in SAMPLES], rtp, classifier=clfp, top_k=1)
        results[precision] = (args.images / best, [r.predictions[0] for r in samples.images], rtp.dtype_name)
    for precision, (ips, preds, dtype) in results.items():
        tops = ", ".join(f"{Path(s).stem}: {p.label} ({p.probability:.3f})" for s, p in zip(SAMPLES, preds))
        print(f"{precision} ({dtype:8s}): {ips:8.2f} images/s | {tops}")
    agree = sum(a.index == b.index for a, b in zip(results["fp32"][1], results["bf16"][1]))
    print(f"bf16/fp32 speed ratio {results['bf16'][0] / results['fp32'][0]:.2f}x; "
          f"top-1 agreement on the {len(SAMPLES)} sample photos: {agree}/{len(SAMPLES)}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
