"""The step-based loop shared by the scene trainers (detect, segment): the run folder
(dlcli/training/run.py), AdamW with warm-up + cosine, steps with progress, a validation pass per
epoch, last/best weights files, a checkpoint after every epoch, Ctrl-C -> checkpoint + Interrupted,
and DDP under torchrun (each rank trains on its share of every step's batch; rank 0 evaluates and
writes). Each trainer supplies what differs (its loss and its evaluation)."""

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
from dlcli.training.distributed import Dist
from dlcli.training.run import RunFolder, check_run_folder
from dlcli.training.schedules import warmup_cosine

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

    def batch(self, epoch: int, step_in_epoch: int, dist: Dist | None = None) -> Any:
        """This rank's samples of one training step, as a list (subclasses may collate them): the
        step's global batch is the same on every rank, each rank takes every world_size-th item."""
        b = self.cfg.batch_size
        rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
        if self.scenes is not None:
            start = (epoch * self.steps_per_epoch + step_in_epoch) * b
            return [self.scene_sample(self.scenes.TRAIN_SEED, start + i) for i in range(rank, b, world)]
        perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(self.train_indices)
        chosen = perm[step_in_epoch * b:(step_in_epoch + 1) * b]
        if world > 1 and len(chosen) < world:  # a ragged last batch: every rank needs a sample
            chosen = np.resize(chosen, world)
        return [self.dataset[int(i)] for i in chosen[rank::world]]

    def validation(self) -> Iterator[Any]:
        for i in self.val_indices:
            yield self.scene_sample(self.scenes.VAL_SEED, i) if self.scenes is not None else self.dataset[i]


def scene_weights_meta(cfg: Any, *, arch: str, task: str, metrics: dict[str, Any], recipe: str) -> dict[str, Any]:
    """What `store.save_weights_file` records for a scene trainer's output, so that --weights-file
    rebuilds the model (its config and labels) and feeds it [0, 1] tensors."""
    # Weights trained on a user's data set inherit that data's terms, which only its owner knows.
    license = ("MIT (trained by the dlcli authors on generated scenes)" if cfg.data == "scenes" else
               f"trained with dlcli on {cfg.data}: the licence of that data applies")
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
        # The world the weights know (dlcli.domain): inputs from elsewhere get a notice.
        "extra": {"domain": "scenes"} if cfg.data == "scenes" else {},
    }


def open_config(cls: type, cfg: Any, out: Path, resume: bool) -> Any:
    """The run's config: a resumed run continues with its own settings (only --epochs may grow);
    counts that must be positive are checked."""
    out = Path(out).expanduser()
    if resume:
        check_run_folder(out, resume=True, force=False)
        saved = json.loads(torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["config"])
        cfg = config_from_checkpoint(cls, saved, {"epochs": cfg.epochs})
    for name in POSITIVE:
        if hasattr(cfg, name) and getattr(cfg, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    return cfg


def config_from_checkpoint(cls: type, saved: dict[str, Any], override: dict[str, Any]) -> Any:
    """The saved run's config with the few fields a resume may change (e.g. more epochs)."""
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in saved.items() if k in known}
    values.update({k: v for k, v in override.items() if k in known})
    return cls(**values)


def run_epochs(
    cfg: Any,
    run: RunFolder,
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
    dist: Dist | None = None,
) -> TrainSummary:
    """Train `params` for `cfg.epochs` (AdamW, `cfg.lr`, `cfg.weight_decay`, `cfg.warmup_steps`),
    resuming mid-epoch from the run's checkpoint when `resume`.

    `step_loss(epoch, step)` returns the loss of this rank's share of one batch (under the
    runtime's autocast, through the DDP-wrapped model when distributed); `evaluate()` returns
    (metrics to log, the score that picks the best weights), on rank 0 only;
    `weights_meta(metrics, global_step)` the metadata saved beside the weights."""
    dist = dist or Dist()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.epochs * steps_per_epoch, cfg.warmup_steps))
    progress: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, best_key: -1.0, "seconds": 0.0}
    if resume:
        state = load_checkpoint(run.checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        progress.update(state["progress"])
        reporter.message(f"resuming {run.path} at epoch {progress['epoch'] + 1}, step {progress['global_step']}")

    def checkpoint() -> Path:
        if dist.is_main:
            save_checkpoint(run.checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
                            progress=progress, config=asdict(cfg))
        return run.checkpoint

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
            step = int(progress["global_step"])
            train_loss = dist.all_reduce_sum([float(np.mean(losses))])[0] / dist.world_size
            run.log("train", {"loss": train_loss, "lr": optimizer.param_groups[0]["lr"]}, step=step, epoch=epoch + 1)
            if dist.is_main:
                metrics, score = evaluate()
                row = run.log("val", metrics, step=step, epoch=epoch + 1)
                reporter.row({"epoch": epoch + 1, "step": step, "loss": round(train_loss, 4), **metrics,
                              "lr": optimizer.param_groups[0]["lr"], "minutes": round(row["time"] / 60, 1)})
                meta = weights_meta({**metrics, "epoch": epoch + 1}, step)
                run.save_weights("last", model.state_dict(), meta)
                if score > progress[best_key]:
                    progress[best_key] = score
                    run.save_weights("best", model.state_dict(), meta)
                    run.note_best(best_key.removeprefix("best_"), score, step=step, epoch=epoch + 1)
            progress["seconds"] = time.time() - started
            progress["epoch"] = epoch + 1
            progress["step_in_epoch"] = 0
            checkpoint()
            dist.barrier()
    except KeyboardInterrupt:
        reporter.finish()
        progress["seconds"] = time.time() - started
        checkpoint()
        run.interrupted()
        raise Interrupted(run.checkpoint) from None
    identical = settle_replicas(model, dist)
    run.finish(epochs=cfg.epochs, world_size=dist.world_size, ranks_identical=identical)
    return TrainSummary(run.path, run.best, cfg.epochs, metrics, time.time() - started)


def evaluation_pictures(run: RunFolder, draw: Any) -> None:
    """The last validation's pictures into the run folder; a failure to draw is a note, not an
    error (the run itself is finished and saved by now)."""
    from dlcli import plots

    try:
        written = draw()
    except Exception as exc:  # a picture must not turn a finished run into a failed command
        run.note(f"could not draw the evaluation pictures ({type(exc).__name__}: {exc})")
        return
    if not written and not plots.available():
        run.note(plots.MISSING)


def settle_replicas(model: torch.nn.Module, dist: Dist) -> bool:
    """The end of a DDP run: every rank takes rank 0's buffers (batch-norm statistics, which DDP
    leaves as each rank's last batch made them), then the ranks check that they hold the same
    weights (a cheap sum of each tensor, compared across ranks). A single process is trivially
    identical."""
    if not dist.active:
        return True
    dist.broadcast_buffers(model)
    module = getattr(model, "module", model)
    sums = [float(t.detach().double().sum()) for t in module.state_dict().values() if t.is_floating_point()]
    total = dist.all_reduce_sum(sums)
    return all(abs(t - s * dist.world_size) <= 1e-6 * max(1.0, abs(t)) for t, s in zip(total, sums))
