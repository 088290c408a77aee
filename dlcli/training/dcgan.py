"""DCGAN training: the generator and the discriminator take turns, with the paper's recipe
(Adam lr 2e-4, beta1 0.5, batch 128, BCE on logits, the non-saturating generator loss).

A run lives in the shared run folder (dlcli/training/run.py): `checkpoint.pt` (both nets, both
optimisers, RNG, counters; written every `checkpoint_every` steps, at each epoch end and on
Ctrl-C), `metrics.jsonl` (per-epoch losses), `last.safetensors` (the generator `dl generate
--weights-file` reads; a GAN has no held-out metric, so there is no best.safetensors) and
`samples/epoch_NNN.png` (a grid from a fixed latent batch, so epochs can be compared).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dlcli.training.configs import DCGANConfig
from dlcli.atomic import atomic_target
from dlcli.errors import DataError, InputError
from dlcli.models.dcgan import D_NORMS, UPSAMPLES
from dlcli.media import tensors_to_pil
from dlcli.progress import NullReporter, Reporter
from dlcli.training.gan_augment import AUGMENTS, AugmentedD, default_shift
from dlcli.training.checkpoint import Interrupted, load_checkpoint, save_checkpoint
from dlcli.training.run import RunFolder, check_run_folder

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime

ARCH = "dcgan"
DATASETS = ("mnist", "fashion-mnist")
# Where the Debian package `dataset-fashion-mnist` puts the IDX files.
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")


# --- data --------------------------------------------------------------------------------------


def _mnist_train(cfg: DCGANConfig, reporter: Reporter | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images and labels of MNIST or Fashion-MNIST (same IDX format, read by dlcli.data.mnist)."""
    from dlcli.data.mnist import find_mnist, load_mnist, locate

    if cfg.data == "mnist":
        return load_mnist(find_mnist(cfg.data_dir, offline=cfg.offline, reporter=reporter), "train")
    candidates = [Path(cfg.data_dir).expanduser()] if cfg.data_dir else [Path(p) for p in FASHION_MNIST_DIRS]
    for folder in candidates:
        found = locate(folder)
        if found is not None:
            return load_mnist(found, "train")
    if cfg.data_dir:
        raise DataError(f"no Fashion-MNIST IDX files in {cfg.data_dir} (train-images-idx3-ubyte[.gz] and the "
                        "three others)")
    raise DataError("Fashion-MNIST not found; install it with `apt-get install dataset-fashion-mnist` "
                    "or pass --data DIR holding its IDX files")


def _folder_images(folder: Path, size: int, channels: int, limit: int | None) -> torch.Tensor:
    """Every image under `folder`, centre-cropped square and resized to size x size, as uint8
    (N, C, size, size). Held in memory: DCGAN data sets are small images."""
    from PIL import Image, ImageOps

    from dlcli.media import expand_inputs, load_image

    files = expand_inputs([str(folder)])
    if limit is not None:
        files = files[:limit]
    mode = "L" if channels == 1 else "RGB"
    out = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    for i, f in enumerate(files):
        img = ImageOps.fit(load_image(f, mode=mode), (size, size), Image.BICUBIC)
        t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        out[i] = t.reshape(size, size, channels).permute(2, 0, 1)
    return out


def load_training_data(cfg: DCGANConfig, reporter: Reporter | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(uint8 (N, C, H, W) at cfg.image_size, int64 class labels (N,) or None for a folder of images)."""
    channels = resolved_channels(cfg)
    if cfg.data in DATASETS:
        x, y = _mnist_train(cfg, reporter)
        if cfg.limit is not None:
            x, y = x[: cfg.limit], y[: cfg.limit]
        x = x.unsqueeze(1)
        if cfg.image_size != 28:
            # Pad rather than stretch: 28 -> 32 keeps the digits' stroke widths; 64 scales up.
            if cfg.image_size == 32:
                x = nn.functional.pad(x, (2, 2, 2, 2))
            else:
                x = nn.functional.interpolate(x.float(), size=cfg.image_size, mode="bilinear",
                                              align_corners=False).round().clamp(0, 255).to(torch.uint8)
        if channels == 3:
            x = x.expand(-1, 3, -1, -1).contiguous()
        return x, y.long()
    folder = Path(cfg.data).expanduser()
    if not folder.is_dir():
        raise InputError(f"data {cfg.data!r} is neither {' nor '.join(DATASETS)} nor a folder of images")
    return _folder_images(folder, cfg.image_size, channels, cfg.limit), None


def resolved_channels(cfg: DCGANConfig) -> int:
    if cfg.channels is not None:
        if cfg.channels not in (1, 3):
            raise InputError(f"--channels must be 1 or 3, got {cfg.channels}")
        return cfg.channels
    return 1 if cfg.data in DATASETS else 3


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float -1..1 (the range of G's tanh)."""
    return x.float().div_(127.5).sub_(1.0)


# --- models and the training step --------------------------------------------------------------


def model_config(cfg: DCGANConfig) -> dict[str, Any]:
    return {"latent_dim": cfg.latent_dim, "channels": resolved_channels(cfg), "image_size": cfg.image_size,
            "width": cfg.width, "upsample": cfg.upsample}


def build_pair(cfg: DCGANConfig) -> tuple[nn.Module, nn.Module]:
    from dlcli.models.dcgan import Discriminator, Generator

    mc = model_config(cfg)
    return Generator(**mc), Discriminator(mc["channels"], mc["image_size"], mc["width"], norm=cfg.d_norm,
                                          classes=CLASSES if cfg.class_entropy > 0 else 0)


class _Pair:
    """Two optimisers saved/restored as one (checkpoint.py takes a single optimizer object)."""

    def __init__(self, g: torch.optim.Optimizer, d: torch.optim.Optimizer) -> None:
        self.g, self.d = g, d

    def state_dict(self) -> dict[str, Any]:
        return {"g": self.g.state_dict(), "d": self.d.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.g.load_state_dict(state["g"])
        self.d.load_state_dict(state["d"])


LOSSES = ("bce", "hinge")
CLASSES = 10  # MNIST's and Fashion-MNIST's: the data sets --class-entropy can use
LR_SCHEDULES = ("constant", "linear")


def _d_loss(kind: str, logits_real: torch.Tensor, logits_fake: torch.Tensor, real_target: float) -> torch.Tensor:
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
    if kind == "hinge":
        # Real logits are pushed above +1, fake ones below -1; past the margin there is no gradient.
        return nn.functional.relu(1 - logits_real).mean() + nn.functional.relu(1 + logits_fake).mean()
    bce = nn.functional.binary_cross_entropy_with_logits
    return bce(logits_real, torch.full_like(logits_real, real_target)) + bce(logits_fake, torch.zeros_like(logits_fake))


def _g_loss(kind: str, logits: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return -logits.mean()
    # The non-saturating loss -log D(G(z)): stronger gradients early than log(1 - D(G(z))).
    return nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def class_entropy_terms(class_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean entropy of each sample's class distribution, entropy of the batch's mean distribution).
    G lowers the first (each sample one clear class) and raises the second (all classes used):
    the generator's side of CatGAN (Springenberg 2016)."""
    p = class_logits.float().softmax(1)
    per_sample = -(p * p.clamp_min(1e-8).log()).sum(1).mean()
    mean = p.mean(0)
    return per_sample, -(mean * mean.clamp_min(1e-8).log()).sum()


def train_step(g: nn.Module, d: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
               real: torch.Tensor, latent_dim: int, real_target: float = 1.0,
               runtime: Runtime | None = None, loss: str = "bce", labels: torch.Tensor | None = None,
               class_entropy: float = 0.0) -> dict[str, float]:
    """One D update then one G update. Returns the losses and D's mean outputs (as probabilities)
    on real and fake images.

    With `labels` (the real images' classes) D's class head also learns to name real digits, and with
    `class_entropy` > 0 G's loss adds class_entropy * (per-sample entropy - batch entropy) of that
    head on the fakes (`class_entropy_terms`)."""
    n = real.shape[0]
    z = torch.randn(n, latent_dim, device=real.device)
    ctx = runtime.autocast() if runtime is not None else _null()
    classes = labels is not None
    push = classes and class_entropy > 0  # G's entropy terms (D's class head learns whenever labels come)
    out: dict[str, float] = {}
    # D: real -> 1 (smoothed), fake -> 0. The fake batch is detached so G gets no gradient here.
    with ctx:
        fake = g(z)
        if classes:
            logits_real, class_real = d.forward_both(real)
        else:
            logits_real = d(real)
        logits_fake = d(fake.detach())
        loss_d = _d_loss(loss, logits_real.float(), logits_fake.float(), real_target)
        if classes:
            class_loss = nn.functional.cross_entropy(class_real.float(), labels)
            loss_d = loss_d + class_loss
            out["class_loss"] = float(class_loss.detach())
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    ctx = runtime.autocast() if runtime is not None else _null()
    with ctx:
        if push:
            logits, class_fake = d.forward_both(fake)
        else:
            logits = d(fake)
        loss_g = _g_loss(loss, logits.float())
        if push:
            per_sample, batch = class_entropy_terms(class_fake)
            loss_g = loss_g + class_entropy * (per_sample - batch)
            out.update(fake_entropy=float(per_sample.detach()), batch_entropy=float(batch.detach()))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return {
        "loss_d": float(loss_d.detach()),
        "loss_g": float(loss_g.detach()),
        "d_real": float(torch.sigmoid(logits_real.detach().float()).mean()),
        "d_fake": float(torch.sigmoid(logits_fake.detach().float()).mean()),
        **out,
    }


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()


def weights_meta(cfg: DCGANConfig, metrics: dict[str, Any], recipe: str) -> dict[str, Any]:
    """The metadata `store.save_weights_file` needs so that `--weights-file` loads the generator."""
    data_name = cfg.data if cfg.data in DATASETS else "image folder"
    return {
        "name": cfg.name,
        "arch": ARCH,
        "task": "generate",
        "config": model_config(cfg),
        "labels": None,
        "preprocess": "dcgan",
        "preprocess_args": {},
        "metrics": metrics,
        "recipe": recipe,
        "license": "MIT (weights trained by dlcli)",
        "description": f"DCGAN generator trained on {data_name}",
        "extra": {"data": data_name},
    }


def save_generator(path: Path, g: nn.Module, cfg: DCGANConfig, metrics: dict[str, Any], recipe: str) -> str:
    from dlcli.weights.store import save_weights_file

    module = getattr(g, "module", g)
    return save_weights_file(path, module.state_dict(), weights_meta(cfg, metrics, recipe))


def sample_grid(g: nn.Module, z: torch.Tensor, ncols: int = 8) -> Any:
    """A PIL grid of G(z) (G is put in eval mode for this and restored)."""
    from dlcli.media import make_grid

    was_training = g.training
    g.eval()
    with torch.no_grad():
        imgs = g(z).float().cpu()
    g.train(was_training)
    tiles = tensors_to_pil(imgs)
    return make_grid(tiles, ncols, pad=2, scale=2 if imgs.shape[-1] <= 32 else 1)


def _ema_copy(g: nn.Module) -> nn.Module:
    import copy

    ema = copy.deepcopy(getattr(g, "module", g))
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def _ema_update(ema: nn.Module, g: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * g for parameters; buffers (BN statistics) are copied."""
    src = getattr(g, "module", g)
    for pe, p in zip(ema.parameters(), src.parameters()):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), src.buffers()):
        be.copy_(b)


@torch.no_grad()
def recalibrate_bn(g: nn.Module, latent_dim: int, *, batches: int = 20, batch_size: int = 256, seed: int = 0) -> None:
    """Re-estimate G's batch-norm statistics for its current weights (an exact average over
    `batches` random latent batches). Needed for the averaged generator, whose weights never ran
    a forward pass of their own during training."""
    bns = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m.momentum, m.training) for m in bns]
    was_training = g.training
    device = next(g.parameters()).device
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    g.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        g(torch.randn(batch_size, latent_dim, generator=gen).to(device))
    for m, (mom, _) in zip(bns, saved):
        m.momentum = mom
    g.train(was_training)


@dataclass
class DCGANRunResult:
    out_dir: Path
    weights_file: Path
    sha256: str
    epochs_done: int
    steps: int
    history: list[dict[str, Any]]
    seconds: float
    resumed_from: int | None


def train_dcgan(cfg: DCGANConfig, out_dir: Path, *, runtime: Runtime | None = None, reporter: Reporter | None = None,
                resume: bool = False, force: bool = False, max_steps: int | None = None) -> DCGANRunResult:
    """Train (or continue) a DCGAN in the run folder out_dir: checkpoints, metrics, sample grids
    and the generator.

    `resume`: continue the run in out_dir; its config must describe the same models and data.
    `force`: start over in a folder that holds a run. `max_steps`: stop after this many steps in
    this call (tests, time-boxed runs)."""
    reporter = reporter or NullReporter()
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise InputError("--epochs and --batch-size must be at least 1")
    if cfg.image_size not in (28, 32, 64):
        raise InputError(f"--image-size must be 28, 32 or 64, got {cfg.image_size}")
    if cfg.class_entropy < 0:
        raise InputError(f"--class-entropy must be 0 (off) or more, got {cfg.class_entropy}")
    for key, allowed in (("loss", LOSSES), ("lr_schedule", LR_SCHEDULES), ("d_norm", D_NORMS),
                         ("upsample", UPSAMPLES), ("augment", AUGMENTS)):
        if getattr(cfg, key) not in allowed:
            raise InputError(f"--{key.replace('_', '-')} must be one of {', '.join(allowed)}, "
                             f"got {getattr(cfg, key)!r}")
    out_dir = Path(out_dir).expanduser()
    check_run_folder(out_dir, resume=resume, force=force)  # before the data are read
    device = runtime.device if runtime is not None else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    g, d = build_pair(cfg)
    if runtime is not None:
        g, d = runtime.place(g), runtime.place(d)
    if cfg.init_from and not resume:
        _load_generator_init(g, cfg)
    lr_d = cfg.lr_d if cfg.lr_d is not None else cfg.lr
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr_d, betas=(cfg.beta1, cfg.beta2))
    pair = nn.ModuleDict({"g": g, "d": d})
    g_ema = _ema_copy(g) if cfg.ema > 0 else None
    d_seen = AugmentedD(d, cfg.augment, default_shift(cfg.image_size))  # what G and D train against
    opts = _Pair(opt_g, opt_d)
    # A fixed latent batch for the per-epoch grids, drawn before anything else uses the RNG.
    fixed_z = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)

    start_epoch, step, history, resumed_from = 0, 0, [], None
    cfg_json = json.loads(json.dumps(asdict(cfg), default=str))
    if resume:
        # Compare the options first: loading a checkpoint of other shapes would fail less clearly.
        old = asdict(load_run_config(out_dir))
        for key in ("data", "latent_dim", "width", "image_size", "channels", "d_norm", "upsample", "class_entropy"):
            if old.get(key) != cfg_json.get(key):
                raise InputError(f"--resume {resume}: the run used {key}={old.get(key)!r}, this call gives "
                                 f"{cfg_json.get(key)!r}; pass the same options (or none of them)")
        state = load_checkpoint(out_dir / "checkpoint.pt", model=pair, optimizer=opts)
        if g_ema is not None:
            # A run from before the average existed starts it from the current generator.
            g_ema.load_state_dict(state["extra"].get("g_ema") or getattr(g, "module", g).state_dict())
        prog = state["progress"]
        start_epoch, step, history = prog["epoch"], prog["step"], prog.get("history", [])
        resumed_from = step
        reporter.message(f"resuming at epoch {start_epoch + 1}, step {step}")

    images, labels = load_training_data(cfg, reporter)
    if cfg.class_entropy > 0 and labels is None:
        raise InputError("--class-entropy needs the classes of the training images: use it with mnist or "
                         "fashion-mnist, not a folder of images")
    if cfg.class_entropy <= 0:
        labels = None
    n = images.shape[0]
    if n < 2:
        raise DataError(f"need at least 2 training images, found {n}")
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch  # drop the ragged last batch: BN statistics of 1-3 images are noise
    real_target = 1.0 - cfg.label_smoothing
    total_steps = cfg.epochs * steps_per_epoch

    def set_lr() -> None:
        # Linear decay over the whole run, from the step counter, so a resumed run picks it up.
        frac = max(0.0, 1.0 - step / total_steps) if cfg.lr_schedule == "linear" else 1.0
        for opt, base in ((opt_g, cfg.lr), (opt_d, lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * frac
    run = RunFolder.open(out_dir, task="generate", config=cfg_json, resume=resume, force=force, reporter=reporter)
    ckpt = run.checkpoint
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)

    def checkpoint(epoch: int, within: int) -> None:
        save_checkpoint(ckpt, model=pair, optimizer=opts, config=cfg_json,
                        extra_state={"g_ema": g_ema.state_dict()} if g_ema is not None else None,
                        progress={"epoch": epoch, "within": within, "step": step, "history": history})

    t0 = time.perf_counter()
    steps_this_call = 0
    g.train()
    d.train()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            # The permutation comes from (seed, epoch), so a resumed epoch sees the same order and
            # `within` (batches already done) skips exactly what was trained.
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
            within = 0
            if resume and epoch == start_epoch:
                within = int(state["progress"].get("within", 0))
            reporter.start(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch, unit="step")
            if within:
                reporter.advance(within)
            sums = dict.fromkeys(("loss_d", "loss_g", "d_real", "d_fake"), 0.0)  # + class terms when on
            counted = 0
            b = done = within  # done: batches of this epoch already trained (what a checkpoint records)
            for b in range(within, steps_per_epoch):
                idx = perm[b * batch:(b + 1) * batch]
                real = to_unit(images[idx]).to(device)
                set_lr()
                m = train_step(g, d_seen, opt_g, opt_d, real, cfg.latent_dim, real_target, runtime, cfg.loss,
                               labels=labels[idx].to(device) if labels is not None else None,
                               class_entropy=cfg.class_entropy)
                if g_ema is not None:
                    _ema_update(g_ema, g, cfg.ema)
                if not all(math.isfinite(v) for v in m.values()):
                    raise DataError(f"training diverged at step {step} (losses {m}); lower --lr")
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + v
                counted += 1
                step += 1
                done = b + 1
                steps_this_call += 1
                reporter.advance(1, loss_d=m["loss_d"], loss_g=m["loss_g"])
                if step % cfg.checkpoint_every == 0:
                    checkpoint(epoch, b + 1)
                if max_steps is not None and steps_this_call >= max_steps:
                    break
            reporter.finish()
            stopped_early = max_steps is not None and steps_this_call >= max_steps and b + 1 < steps_per_epoch
            if stopped_early:
                checkpoint(epoch, b + 1)
                break
            row = {"epoch": epoch + 1, "step": step, **{k: round(v / max(counted, 1), 4) for k, v in sums.items()},
                   "seconds": round(time.perf_counter() - t0, 1)}
            history.append(row)
            reporter.row(row)
            run.log("train", {**{k: v / max(counted, 1) for k, v in sums.items()}, "lr": opt_g.param_groups[0]["lr"],
                              "lr_d": opt_d.param_groups[0]["lr"]}, step=step, epoch=epoch + 1)
            if g_ema is not None:
                recalibrate_bn(g_ema, cfg.latent_dim, seed=cfg.seed)
            grid = sample_grid(g_ema if g_ema is not None else g, fixed_z)
            with atomic_target(out_dir / "samples" / f"epoch_{epoch + 1:03d}.png") as tmp:
                grid.save(tmp, format="PNG")
            run.log_image("samples", grid, step=step)  # the fixed latent batch, epoch by epoch
            checkpoint(epoch + 1, 0)
            if max_steps is not None and steps_this_call >= max_steps:
                break
    except KeyboardInterrupt:
        checkpoint(epoch, done if "done" in locals() else 0)
        run.interrupted()
        raise Interrupted(ckpt) from None

    epochs_done = history[-1]["epoch"] if history else 0
    recipe = (f"dl generate train {cfg.data} --epochs {cfg.epochs} --batch-size {cfg.batch_size} --lr {cfg.lr} "
              + (f"--lr-d {cfg.lr_d} " if cfg.lr_d is not None else "")
              + f"--beta1 {cfg.beta1} --beta2 {cfg.beta2} --lr-schedule {cfg.lr_schedule} --loss {cfg.loss} "
              f"--d-norm {cfg.d_norm} --label-smoothing {cfg.label_smoothing} "
              + (f"--init-from {cfg.init_from} " if cfg.init_from else "")
              + f"--image-size {cfg.image_size} --width {cfg.width} --upsample {cfg.upsample} --augment {cfg.augment} "
              + (f"--class-entropy {cfg.class_entropy} " if cfg.class_entropy > 0 else "")
              + f"--seed {cfg.seed}; "
              + (f"weights averaged (EMA {cfg.ema}), BN statistics re-estimated; " if cfg.ema > 0 else "")
              + f"{step} steps")
    metrics = {"epochs": epochs_done, "steps": step}
    if history:
        metrics.update({"final_loss_d": history[-1]["loss_d"], "final_loss_g": history[-1]["loss_g"]})
    weights_file = run.last
    if g_ema is not None:
        recalibrate_bn(g_ema, cfg.latent_dim, seed=cfg.seed)
    sha = save_generator(weights_file, g_ema if g_ema is not None else g, cfg, metrics, recipe)
    if max_steps is not None and epochs_done < cfg.epochs:
        run.interrupted()  # time-boxed: the run is not over, --resume continues it
    else:
        run.finish(epochs=epochs_done, steps=step)
    return DCGANRunResult(out_dir, weights_file, sha, epochs_done, step, history, time.perf_counter() - t0,
                          resumed_from)


def _load_generator_init(g: nn.Module, cfg: DCGANConfig) -> None:
    """Start G from registered generator weights (e.g. the bundled dcgan.mnist) whose config
    matches this run's: a fine-tune with a new recipe instead of a run from scratch."""
    from dlcli.weights import loader

    lw = loader.load_model(cfg.init_from, task="generate", offline=cfg.offline)
    mine = model_config(cfg)
    built = loader.model_config(lw.spec)
    theirs = {k: built.get(k) for k in mine}
    if theirs != mine:
        raise InputError(f"--init-from {cfg.init_from}: its generator has {theirs}, this run builds {mine}; "
                         "pass the same --width/--latent-dim/--image-size/--upsample")
    getattr(g, "module", g).load_state_dict(lw.model.state_dict())


def load_run_config(run_dir: Path) -> DCGANConfig:
    """The config a run folder's checkpoint was written with (so --resume needs no options)."""
    import dataclasses

    path = Path(run_dir).expanduser()
    path = path / "checkpoint.pt" if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}; give the --out folder of the run to resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        raw = json.loads(payload["config"])
    except Exception as exc:
        raise InputError(f"{path} is not a readable dlcli checkpoint ({str(exc).splitlines()[0]})") from None
    known = {f.name for f in dataclasses.fields(DCGANConfig)}
    return DCGANConfig(**{k: v for k, v in raw.items() if k in known})
