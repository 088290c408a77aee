"""Why does a DCGAN generator miss "80% of samples read as digits"? Three looks (issue 20):

1. per-class confidence of deepconvnet.mnist_ce (dcgan_quality.py's judge) on N samples (is one digit the problem, or all?);
2. grids of the 64 least and 64 most confident samples, to look at yourself (does the classifier
   see what a person sees?);
3. memorisation: each sample's L2 distance to its nearest training image, beside the same for
   held-out real test digits (samples much closer than real digits would be copies).

    python benchmarks/dcgan_diagnose.py --data DIR --weights-file runs/dcgan-mnist/last.safetensors --out diag/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_generator(weights_file: Path | None) -> Any:
    """The loaded generator: a weights file, else the bundled dcgan.mnist (offline)."""
    from dlcli import catalog
    from dlcli.weights import loader

    catalog.load()
    return loader.load_model(None if weights_file else "dcgan.mnist", task="generate", file=weights_file, offline=True)


def load_judge() -> Any:
    """deepconvnet.mnist_ce in eval mode: dcgan_quality.py's judge (bundled)."""
    from dlcli import catalog
    from dlcli.weights import loader

    catalog.load()
    return loader.load_model("deepconvnet.mnist_ce", task="classify", offline=True).model.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with the MNIST IDX files")
    ap.add_argument("--weights-file", type=Path, default=None, help="generator weights (default: dcgan.mnist)")
    ap.add_argument("--out", type=Path, required=True, help="folder for lowest/highest_confidence.png")
    ap.add_argument("--n", type=int, default=4000, help="samples (default 4000)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import torch

    from dlcli.data.mnist import load_mnist
    from dlcli.media import make_grid, tensors_to_pil

    g, clf = load_generator(args.weights_file).model.eval(), load_judge()
    latent = int(getattr(g, "latent_dim", 100))
    torch.manual_seed(args.seed)
    with torch.inference_mode():
        x = torch.cat([g(torch.randn(min(500, args.n - i), latent)) for i in range(0, args.n, 500)]).float()
        x01 = (x + 1) / 2
        probs = torch.cat([clf(x01[i:i + 500]).softmax(1) for i in range(0, args.n, 500)])
    conf, pred = probs.max(1)
    print(f"{args.n} samples: {float((conf >= 0.9).float().mean()):.1%} confident (p >= 0.9)")
    for c in range(10):
        m = pred == c
        if m.any():
            print(f"  class {c}: {int(m.sum()):5d} samples, mean confidence {float(conf[m].mean()):.3f}, "
                  f"confident {float((conf[m] >= 0.9).float().mean()):.0%}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, order in (("lowest", conf.argsort()[:64]), ("highest", conf.argsort(descending=True)[:64])):
        make_grid(tensors_to_pil(x[order]), 8, pad=2, scale=2).save(args.out / f"{name}_confidence.png")
    train_x, _ = load_mnist(args.data, "train")
    test_x, _ = load_mnist(args.data, "test")
    flat = train_x.float().div(255).reshape(len(train_x), -1)
    k = min(500, args.n)
    d_samples = torch.cdist(x01[:k].reshape(k, -1), flat).min(1).values
    d_real = torch.cdist(test_x[:k].float().div(255).reshape(k, -1), flat).min(1).values
    print(f"nearest training image (L2, {k} each): samples median {float(d_samples.median()):.2f} "
          f"(min {float(d_samples.min()):.2f}); real test digits median {float(d_real.median()):.2f} "
          f"(min {float(d_real.min()):.2f})")
    print(f"pictures: {args.out / 'lowest_confidence.png'}, {args.out / 'highest_confidence.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
