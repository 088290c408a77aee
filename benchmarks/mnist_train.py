"""Benchmark: training the book's DeepConvNet on this CPU (its recipe, or a faster one).

1. Throughput of one training step in three set-ups, measured in one run on the same data:
   fp32 (NCHW), fp32 + channels_last, bf16 autocast + channels_last; printed as images/s and as
   ratios against fp32. (bf16 is only fast on CPUs with AVX512-BF16 or AMX; on AVX2-only CPUs it
   is emulated and much slower: the ratio says which this machine is.)
2. Unless --epochs 0: a recipe trained with the chosen set-up (--train-as), printing each epoch
   and the wall time (test evaluations included) at which the test accuracy first reached 99.38%
   (the book's figure; the book's NumPy code runs at about 114 images/s, 20 epochs in ~3 h).
   --recipe book: Adam 0.001, constant, batch 100, 20 epochs, no augmentation (the book's).
   --recipe fast: the same network, optimiser and rate with augmentation (small rotations, scales
   and shifts) and a cosine schedule to zero over 6 epochs: the issue's target is 99.38% within
   5 minutes on this 2-core CPU. (Without augmentation, lr 0.002 cosine reached 99.38% after 5
   epochs and 99.37% after 6: no margin.)

    python benchmarks/mnist_train.py --data ../shared/data/MNIST/raw                 # both parts
    python benchmarks/mnist_train.py --data ../shared/data/MNIST/raw --recipe fast --steps 20
    python benchmarks/mnist_train.py --data ../shared/data/MNIST/raw --epochs 0      # throughput only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dlcli import catalog  # noqa: E402
from dlcli.data.mnist import load_mnist, to_float  # noqa: E402
from dlcli.device import Runtime  # noqa: E402
from dlcli.models.deepconvnet import DeepConvNet  # noqa: E402
from dlcli.training.mnist import BOOK_ACCURACY, MnistTrainConfig, train_member  # noqa: E402
catalog.load()  # the registry's names (the registry itself imports no task)

# name -> (epochs, lr, schedule, augmentation); all batch 100, Adam.
RECIPES = {
    "book": (20, 1e-3, "none", False),
    "fast": (6, 1e-3, "cosine", True),
}
TARGET_SECONDS = 300.0

SETUPS = {
    "fp32": ("fp32", False),
    "fp32-cl": ("fp32", True),
    "bf16-cl": ("bf16", True),
}


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
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="book", help="what the training part runs")
    ap.add_argument("--epochs", type=int, default=None, help="epochs to train (default: the recipe's; 0: skip)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    ap.add_argument("--train-as", choices=sorted(SETUPS), default="fp32-cl", help="set-up used for the training part")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train_x, train_y = load_mnist(args.data, "train")
    test_x, test_y = load_mnist(args.data, "test")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    figures: dict[str, object] = {"threads": torch.get_num_threads(), "steps": args.steps}
    base = None
    for name, (precision, cl) in SETUPS.items():
        ips = step_throughput(train_x, train_y, precision, cl, args.steps)
        base = base or ips
        figures[f"{name}_images_per_s"] = ips
        print(f"{name:8s} {ips:8.0f} images/s   x{ips / base:.2f} vs fp32", flush=True)

    epochs, lr, schedule, augment = RECIPES[args.recipe]
    epochs = epochs if args.epochs is None else args.epochs
    lr = lr if args.lr is None else args.lr
    if epochs > 0:
        precision, cl = SETUPS[args.train_as]
        cfg = MnistTrainConfig(epochs=epochs, batch_size=100, lr=lr, augment=augment, lr_schedule=schedule,
                               seed=0, channels_last=cl, checkpoint_every=0)
        data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}

        class Rows:
            def start(self, *a: object, **k: object) -> None: ...
            def advance(self, *a: object, **k: object) -> None: ...
            def finish(self) -> None: ...
            def message(self, t: str) -> None: print(t, flush=True)
            def row(self, v: dict) -> None: print(json.dumps(v), flush=True)

        t0 = time.perf_counter()
        res = train_member(cfg, data, Runtime.create("cpu", precision), member_seed=0, out_dir=None, reporter=Rows())
        total = time.perf_counter() - t0
        reach = res.time_to(BOOK_ACCURACY)
        figures.update({"recipe": args.recipe, "lr": lr, "lr_schedule": schedule, "augment": augment,
                        "train_as": args.train_as,
                        "epochs": epochs, "final_test_acc": res.test_acc, "final_errors": res.test_errors,
                        "seconds": total, "seconds_to_book_accuracy": reach,
                        "within_target": reach is not None and reach <= TARGET_SECONDS})
        print(f"{args.recipe} recipe (lr {lr:g}, schedule {schedule}, augmentation {'on' if augment else 'off'}), "
              f"{epochs} epochs as {args.train_as}: "
              f"{res.test_acc:.2%} ({res.test_errors} errors) in {total:.0f} s; first >= {BOOK_ACCURACY:.2%} after "
              + (f"{reach:.0f} s" if reach is not None else "never")
              + f" (target: within {TARGET_SECONDS:.0f} s: {'met' if figures['within_target'] else 'missed'})",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
