"""The step-based run shared by the scene trainers (detect, segment): a run folder that refuses to
be reused without --resume, AdamW with warm-up + cosine, steps with progress, a validation pass
per epoch, `metrics.jsonl`, last/best weights files, a checkpoint after every epoch, and Ctrl-C ->
checkpoint + Interrupted. Each trainer supplies what differs (its loss and its evaluation)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from dlcli.errors import DataError, InputError
from dlcli.progress import Reporter
from dlcli.training.checkpoint import Interrupted, load_checkpoint, save_checkpoint

POSITIVE = ("epochs", "batch_size", "steps_per_epoch", "val_size")


@dataclass(frozen=True)
class TrainSummary:
    out: Path
    best: Path
    epochs: int
    metrics: dict[str, float]
    seconds: float


class SplitData:
    """Training batches and validation samples from the synthetic scene world (an endless stream:
    step s of the run reads scenes s*b .. s*b+b-1 of the training seed; the validation seed's first
    `val_size` scenes) or from a finite `dataset` (the last tenth held out; a seeded permutation per
    epoch, so a run resumed mid-epoch sees the same order). Subclasses turn a scene into a sample."""

    def __init__(self, cfg: Any, dataset: Any = None) -> None:
        self.cfg = cfg
        self.dataset = dataset
        if dataset is None:
            from dlcli.data import scenes

            self.scenes: Any = scenes
            self.classes = list(scenes.CLASS_NAMES)
            self.steps_per_epoch = cfg.steps_per_epoch
            self.train_indices: list[int] = []
            self.val_indices: list[int] = list(range(cfg.val_size))
            return
        self.scenes = None
        self.classes = list(dataset.classes)
        n = len(dataset)
        n_val = max(1, n // 10) if n > 1 else 0
        self.train_indices = list(range(n - n_val))
        self.val_indices = list(range(n - n_val, n))
        if not self.train_indices:
            raise DataError(f"{cfg.data}: too few images to train on (have {n})")
        self.steps_per_epoch = max(1, math.ceil(len(self.train_indices) / cfg.batch_size))

    def scene_sample(self, seed: int, index: int) -> Any:
        raise NotImplementedError

    def batch(self, epoch: int, step_in_epoch: int) -> Any:
        """The samples of one training step, as a list (subclasses may collate them)."""
        b = self.cfg.batch_size
        if self.scenes is not None:
            start = (epoch * self.steps_per_epoch + step_in_epoch) * b
            return [self.scene_sample(self.scenes.TRAIN_SEED, start + i) for i in range(b)]
        perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(self.train_indices)
        return [self.dataset[int(i)] for i in perm[step_in_epoch * b:(step_in_epoch + 1) * b]]

    def validation(self) -> Iterator[Any]:
        for i in self.val_indices:
            yield self.scene_sample(self.scenes.VAL_SEED, i) if self.scenes is not None else self.dataset[i]


def scene_weights_meta(cfg: Any, *, arch: str, task: str, metrics: dict[str, Any], recipe: str,
                       license: str) -> dict[str, Any]:
    """What `store.save_weights_file` records for a scene trainer's output, so that --weights-file
    rebuilds the model (its config and labels) and feeds it [0, 1] tensors."""
    return {
        "arch": arch,
        "task": task,
        "config": cfg.model_config(),
        "labels": list(cfg.classes),
        "preprocess": "tensor01",
        "preprocess_args": {},
        "metrics": metrics,
        "recipe": recipe,
        "license": license,
        "extra": {},
    }


def warmup_cosine(total_steps: int, warmup: int, floor: float = 0.05) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over `warmup` steps, then cosine from 1 down to `floor`."""
    total = max(1, total_steps)
    warm = max(0, min(warmup, total - 1))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def prepare_run_dir(out: Path, resume: bool) -> Path:
    out = Path(out).expanduser()
    ckpt = out / "checkpoint.pt"
    if resume:
        if not ckpt.is_file():
            raise InputError(f"--resume {out}: no checkpoint.pt there; give the --out folder of an earlier run")
    elif ckpt.exists():
        raise InputError(f"{out} already holds a run (checkpoint.pt); pass --resume {out} or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def config_from_checkpoint(cls: type, saved: dict[str, Any], override: dict[str, Any]) -> Any:
    """The saved run's config with the few fields a resume may change (e.g. more epochs)."""
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in saved.items() if k in known}
    values.update({k: v for k, v in override.items() if k in known})
    return cls(**values)


def open_run(cls: type, cfg: Any, out: Path, resume: bool) -> tuple[Any, Path]:
    """(config, run folder): a resumed run continues with its own settings (only --epochs may
    grow); counts that must be positive are checked."""
    out = prepare_run_dir(out, resume)
    if resume:
        saved = json.loads(torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["config"])
        cfg = config_from_checkpoint(cls, saved, {"epochs": cfg.epochs})
    for name in POSITIVE:
        if hasattr(cfg, name) and getattr(cfg, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    return cfg, out


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


def run_epochs(
    cfg: Any,
    out: Path,
    *,
    resume: bool,
    steps_per_epoch: int,
    best_key: str,
    model: torch.nn.Module,
    params: list[torch.nn.Parameter],
    reporter: Reporter,
    step_loss: Callable[[int, int], torch.Tensor],
    evaluate: Callable[[], tuple[dict[str, float], float]],
    weights_meta: Callable[[dict[str, Any], int], dict[str, Any]],
    clip_norm: float | None = None,
) -> TrainSummary:
    """Train `params` for `cfg.epochs` (AdamW, `cfg.lr`, `cfg.weight_decay`, `cfg.warmup_steps`),
    resuming mid-epoch from the folder's checkpoint when `resume`.

    `step_loss(epoch, step)` returns the loss of one batch (under the runtime's autocast);
    `evaluate()` returns (metrics to log, the score that picks the best weights);
    `weights_meta(metrics, global_step)` the metadata saved beside the weights."""
    from dlcli.weights.store import save_weights_file

    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.epochs * steps_per_epoch, cfg.warmup_steps))
    progress: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, best_key: -1.0, "seconds": 0.0}
    if resume:
        state = load_checkpoint(out / "checkpoint.pt", model=model, optimizer=optimizer, scheduler=scheduler)
        progress.update(state["progress"])
        reporter.message(f"resuming {out} at epoch {progress['epoch'] + 1}, step {progress['global_step']}")

    def checkpoint() -> Path:
        return save_checkpoint(out / "checkpoint.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                               progress=progress, config=asdict(cfg))

    best_path = out / "best.safetensors"
    metrics: dict[str, float] = {}
    started = time.time() - float(progress["seconds"])
    model.train()
    try:
        while progress["epoch"] < cfg.epochs:
            epoch = int(progress["epoch"])
            reporter.start(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, unit="step")
            if progress["step_in_epoch"]:
                reporter.advance(progress["step_in_epoch"])
            losses: list[float] = []
            while progress["step_in_epoch"] < steps_per_epoch:
                loss = step_loss(epoch, int(progress["step_in_epoch"]))
                if not torch.isfinite(loss):
                    raise DataError(f"training diverged (loss {float(loss)}) at step {progress['global_step']}; "
                                    "lower --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_norm)
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                progress["step_in_epoch"] += 1
                progress["global_step"] += 1
                reporter.advance(1, loss=float(np.mean(losses[-20:])))
            reporter.finish()
            metrics, score = evaluate()
            progress["seconds"] = time.time() - started
            row = {"epoch": epoch + 1, "step": progress["global_step"], "loss": round(float(np.mean(losses)), 4),
                   **metrics, "lr": optimizer.param_groups[0]["lr"], "minutes": round(progress["seconds"] / 60, 1)}
            reporter.row(row)
            append_jsonl(out / "metrics.jsonl", row)
            meta = weights_meta({**metrics, "epoch": epoch + 1}, int(progress["global_step"]))
            save_weights_file(out / "last.safetensors", model.state_dict(), meta)
            if score > progress[best_key]:
                progress[best_key] = score
                save_weights_file(best_path, model.state_dict(), meta)
            progress["epoch"] = epoch + 1
            progress["step_in_epoch"] = 0
            checkpoint()
    except KeyboardInterrupt:
        reporter.finish()
        progress["seconds"] = time.time() - started
        raise Interrupted(checkpoint()) from None
    return TrainSummary(out, best_path, cfg.epochs, metrics, time.time() - started)
