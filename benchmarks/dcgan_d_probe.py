"""What would a discriminator judge a generator's digits by? A probe for issue 20.

Trains a fresh DCGAN discriminator (the paper's, width 64) for --steps against a fixed pool of the
generator's samples and real MNIST training digits, then asks three things of it on held-out images:

1. AUC real vs generated: can D tell them apart at all?
2. AUC well-formed vs malformed samples (deepconvnet.mnist_ce's confidence >= 0.9 or not, the judge of
   dcgan_quality.py): does what D has learned rank samples by their shape?
3. D's mean logit on the samples as they are and shifted by one and by two pixels (and on real digits
   shifted alike). A generator whose up-steps leave a pattern in phase with the 2x2 pixel grid (the
   checkerboard of strided transposed convs) is caught by that pattern: a one-pixel shift moves its
   samples towards "real", while real digits barely move.

When 1 is high and 2 is near 0.5, D separates fakes by something other than shape, and G, which
learns only from D, gets no pressure to fix malformed digits.

    python benchmarks/dcgan_d_probe.py --data DIR                       # the bundled dcgan.mnist
    python benchmarks/dcgan_d_probe.py --data DIR --weights-file runs/dcgan-mnist/last.safetensors
    python benchmarks/dcgan_d_probe.py --data DIR --checkpoint runs/dcgan-mnist/checkpoint.pt

--checkpoint probes the generator as the game's D sees it during training: the raw G (not the
weight average that gets saved), with batch statistics, in batches of 64.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def auc(pos, neg) -> float:  # noqa: ANN001 - torch tensors
    """Probability that a random positive scores above a random negative (Mann-Whitney U)."""
    import torch

    ranks = torch.cat([pos, neg]).argsort().argsort().double() + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with the MNIST IDX files")
    ap.add_argument("--weights-file", type=Path, default=None, help="generator weights (default: dcgan.mnist)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="a DCGAN run's checkpoint.pt: probe its raw G")
    ap.add_argument("--steps", type=int, default=600, help="D training steps of batch 64 (default 600)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from dcgan_diagnose import load_generator, load_judge  # this folder is on sys.path: the script's own

    from dlcli.data.mnist import load_mnist
    from dlcli.models.dcgan import Discriminator

    torch.manual_seed(args.seed)
    clf = load_judge()
    if args.checkpoint is not None:
        from dlcli.training import dcgan

        payload = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        g, _ = dcgan.build_pair(dcgan.load_run_config(args.checkpoint))
        g.load_state_dict({k[2:]: v for k, v in payload["model"].items() if k.startswith("g.")})
        g.train()
        what, batch = f"raw G of {args.checkpoint}", 64
    else:
        gw = load_generator(args.weights_file)
        g, what, batch = gw.model.eval(), f"{gw.spec.name} ({args.weights_file or 'bundled'})", 500
    latent = int(getattr(g, "latent_dim", 100))
    with torch.inference_mode():
        fakes = torch.cat([g(torch.randn(batch, latent)) for _ in range(16_000 // batch)]).float()
    pool, test = fakes[:-4000].clone(), fakes[-4000:].clone()
    with torch.inference_mode():
        well_formed = torch.cat([clf((test[i:i + 500] + 1) / 2).softmax(1) for i in range(0, len(test), 500)]
                                ).max(1).values >= 0.9
    x, _ = load_mnist(args.data, "train")
    real = x.float().div(127.5).sub(1).unsqueeze(1)
    real_pool, real_test = real[:-4000], real[-4000:]

    d = Discriminator(1, 28, 64, "batch")
    opt = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    t0 = time.perf_counter()
    for _ in range(args.steps):
        lr = d(real_pool[torch.randint(0, len(real_pool), (64,))])
        lf = d(pool[torch.randint(0, len(pool), (64,))])
        loss = (F.binary_cross_entropy_with_logits(lr, torch.full_like(lr, 0.9))
                + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def logits(imgs):  # noqa: ANN001, ANN202 - batches of 64 in train mode, as D saw them
        with torch.no_grad():
            return torch.cat([d(imgs[i:i + 64]) for i in range(0, len(imgs), 64)])

    def shift(imgs, k: int):  # noqa: ANN001, ANN202 - down and right by k pixels, background fills in
        return F.pad(imgs, (k, 0, k, 0), value=-1.0)[:, :, :28, :28]

    lf, lr = logits(test), logits(real_test)
    print(f"generator: {what}; fresh D trained {args.steps} steps "
          f"in {time.perf_counter() - t0:.0f} s")
    print(f"samples well-formed (judge p >= 0.9): {float(well_formed.float().mean()):.1%} of {len(test):,}")
    print(f"AUC real vs generated:            {auc(lr, lf):.3f}")
    print(f"AUC well-formed vs malformed:     {auc(lf[well_formed], lf[~well_formed]):.3f}  (0.5: D ignores shape)")
    print("D's mean logit (real > 0):        as is    shifted 1 px   shifted 2 px")
    for name, imgs, base in (("  generated", test, lf), ("  real", real_test, lr)):
        print(f"{name:34s}{float(base.mean()):6.2f}   {float(logits(shift(imgs, 1)).mean()):10.2f}   "
              f"{float(logits(shift(imgs, 2)).mean()):10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
