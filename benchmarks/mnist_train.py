"""Benchmark: training the book's DeepConvNet on this CPU (its recipe, or a faster one).

1. Throughput of one training step in three set-ups, measured in one run on the same data:
   fp32 (NCHW), fp32 + channels_last, bf16 autocast + channels_last; printed as images/s and as
   ratios against fp32. (bf16 is only fast on CPUs with AVX512-BF16 or AMX; on AVX2-only CPUs it
   is emulated and much slower: the ratio says which this machine is.)
2. Unless --epochs 0: a named recipe of `dl train-mnist --recipe` (dlcli/training/configs.py,
   MNIST_RECIPES) trained with the chosen set-up (--train-as), printing each epoch and the wall
   time (test evaluations included) at which the test accuracy first reached 99.38% (the book's
   figure; the book's NumPy code runs at about 114 images/s, 20 epochs in ~3 h).
   With --seeds N it trains seeds 0..N-1 and prints one row per seed and a summary line: mean,
   std and min of the final accuracy, and how many seeds reached 99.38% within the target time
   (300 s in fp32, 120 s in bf16: the issue's targets for a 2-core CPU). The CPU's bf16
   capability and the load average before and after are printed beside the figures: other
   processes only make the times worse.

    python benchmarks/mnist_train.py --data ../shared/data/MNIST/raw                 # both parts
    python benchmarks/mnist_train.py --data ../shared/data/MNIST/raw --recipe fast --steps 20
    python benchmarks/mnist_train.py --data DIR --recipe fast --seeds 10 --steps 0 --threads 2 --train-as bf16-cl
    python benchmarks/mnist_train.py --data ../shared/data/MNIST/raw --epochs 0      # throughput only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dlcli import catalog  # noqa: E402
from dlcli.data.mnist import load_mnist, to_float  # noqa: E402
from dlcli.device import Runtime, native_bf16  # noqa: E402
from dlcli.models.deepconvnet import DeepConvNet  # noqa: E402
from dlcli.training.configs import MNIST_RECIPES  # noqa: E402
from dlcli.training.mnist import BOOK_ACCURACY, MnistTrainConfig, train_member  # noqa: E402
catalog.load()  # the registry's names (the registry itself imports no task)

TARGET_SECONDS = {"fp32": 300.0, "bf16": 120.0}  # the time-to-99.38% targets on 2 cores

SETUPS = {
    "fp32": ("fp32", False),
    "fp32-cl": ("fp32", True),
    "bf16-cl": ("bf16", True),
}


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def step_throughput(images: torch.Tensor, labels: torch.Tensor, precision: str, channels_last: bool,
                    steps: int, batch: int = 100, warmup: int = 5) -> float:
    """Images per second of forward + backward + Adam step, data preparation included."""
    rt = Runtime.create("cpu", precision)
    torch.manual_seed(0)
    model = rt.place(DeepConvNet(), channels_last=channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        idx = perm[(i * batch) % (images.shape[0] - batch):][:batch]
        x = rt.to(to_float(images[idx]), channels_last=channels_last)
        with rt.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with the MNIST IDX files")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per set-up (batch 100)")
    ap.add_argument("--recipe", choices=sorted(MNIST_RECIPES), default="book", help="what the training part runs")
    ap.add_argument("--seeds", type=int, default=1, help="train seeds 0..N-1 and print the per-seed table and summary")
    ap.add_argument("--target-seconds", type=float, default=None,
                    help="time allowed to reach 99.38%% (default: 300 in fp32, 120 in bf16)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs to train (default: the recipe's; 0: skip)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    ap.add_argument("--train-as", choices=sorted(SETUPS) + ["auto"], default="fp32-cl",
                    help="set-up used for the training part (auto: bf16-cl where the CPU has native bf16, else fp32-cl)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train_x, train_y = load_mnist(args.data, "train")
    test_x, test_y = load_mnist(args.data, "test")
    native, why = native_bf16(torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) of {os.cpu_count()} CPUs, {cpu_name()}; "
          f"{why}; load average {loadavg()}", flush=True)
    figures: dict[str, object] = {"threads": torch.get_num_threads(), "steps": args.steps, "cpu": cpu_name(),
                                  "native_bf16": native, "bf16_capability": why, "load_before": loadavg()}
    base = None
    for name, (precision, cl) in (SETUPS.items() if args.steps > 0 else ()):
        ips = step_throughput(train_x, train_y, precision, cl, args.steps)
        base = base or ips
        figures[f"{name}_images_per_s"] = ips
        print(f"{name:8s} {ips:8.0f} images/s   x{ips / base:.2f} vs fp32", flush=True)

    recipe = MNIST_RECIPES[args.recipe]
    epochs = recipe["epochs"] if args.epochs is None else args.epochs
    lr = recipe["lr"] if args.lr is None else args.lr
    train_as = args.train_as if args.train_as != "auto" else ("bf16-cl" if native else "fp32-cl")
    if epochs > 0:
        precision, cl = SETUPS[train_as]
        target = args.target_seconds or TARGET_SECONDS[precision]
        cfg = dataclasses.replace(MnistTrainConfig(recipe_name=args.recipe).with_recipe(), epochs=epochs, lr=lr,
                                  seed=0, channels_last=cl, checkpoint_every=0)
        data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
        print(f"{cfg.describe_recipe()}; trained as {train_as}", flush=True)

        class Rows:
            def start(self, *a: object, **k: object) -> None: ...
            def advance(self, *a: object, **k: object) -> None: ...
            def finish(self) -> None: ...
            def message(self, t: str) -> None: print(t, flush=True)
            def row(self, v: dict) -> None:
                if args.seeds == 1:
                    print(json.dumps(v), flush=True)

        runs = []
        if args.seeds > 1:
            print(f"{'seed':>4} {'final acc':>9} {'errors':>6} {'best acc':>8} {'to 99.38%':>9} {'epoch':>5} {'total s':>7} "
                  f"{'images/s':>8} {'met':>4} {'load':>14}", flush=True)
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            res = train_member(dataclasses.replace(cfg, seed=seed), data, Runtime.create("cpu", precision),
                               member_seed=seed, out_dir=None, reporter=Rows())
            total = time.perf_counter() - t0
            reach = res.time_to(BOOK_ACCURACY)
            reach_epoch = next((e.epoch for e in res.epochs if e.test_acc >= BOOK_ACCURACY), None)
            met = reach is not None and reach <= target
            ips = statistics.mean(e.images_per_s for e in res.epochs)
            runs.append({"seed": seed, "final_test_acc": res.test_acc, "final_errors": res.test_errors,
                         "best_test_acc": res.best_acc, "seconds": total, "seconds_to_book_accuracy": reach,
                         "epoch_of_book_accuracy": reach_epoch,
                         "images_per_s": ips, "within_target": met, "load": loadavg(),
                         "per_epoch": [e.test_acc for e in res.epochs]})
            if args.seeds > 1:
                print(f"{seed:>4} {res.test_acc:>9.2%} {res.test_errors:>6} {res.best_acc:>8.2%} "
                      f"{(f'{reach:.0f} s' if reach is not None else 'never'):>9} {reach_epoch or '-':>5} {total:>7.0f} {ips:>8.0f} "
                      f"{'yes' if met else 'NO':>4} {loadavg():>14}", flush=True)
                if args.json:  # after every seed, so a study cut short keeps what it measured
                    args.json.write_text(json.dumps({**figures, "runs": runs}, indent=2) + "\n")
            else:
                print(f"{args.recipe} recipe as {train_as}: {res.test_acc:.2%} ({res.test_errors} errors) in {total:.0f} s; "
                      f"first >= {BOOK_ACCURACY:.2%} after " + (f"{reach:.0f} s" if reach is not None else "never")
                      + f" (target: within {target:.0f} s: {'met' if met else 'missed'})", flush=True)
        accs = [r["final_test_acc"] for r in runs]
        reached = [r["seconds_to_book_accuracy"] for r in runs if r["seconds_to_book_accuracy"] is not None]
        summary = {
            "recipe": args.recipe, "train_as": train_as, "epochs": epochs, "lr": lr, "seeds": args.seeds,
            "mean_acc": statistics.mean(accs), "std_acc": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "min_acc": min(accs), "max_acc": max(accs),
            "met": sum(r["within_target"] for r in runs), "target_seconds": target,
            "mean_seconds_to_book_accuracy": statistics.mean(reached) if reached else None,
            "max_seconds_to_book_accuracy": max(reached) if reached else None,
            "mean_seconds": statistics.mean(r["seconds"] for r in runs), "load_after": loadavg(),
        }
        figures.update({"training": summary, "runs": runs})
        if args.seeds > 1:
            print(f"summary: {args.recipe} recipe as {train_as}, {args.seeds} seeds: final accuracy mean "
                  f"{summary['mean_acc']:.2%}, std {summary['std_acc']:.2%}, min {summary['min_acc']:.2%}, max "
                  f"{summary['max_acc']:.2%}; reached {BOOK_ACCURACY:.2%} within {target:.0f} s: {summary['met']} of "
                  f"{args.seeds} (time to it: mean "
                  + (f"{summary['mean_seconds_to_book_accuracy']:.0f} s, max {summary['max_seconds_to_book_accuracy']:.0f} s"
                     if reached else "n/a")
                  + f"); {summary['mean_seconds']:.0f} s per run; {why}; load average {figures['load_before']} "
                  f"before, {summary['load_after']} after", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
