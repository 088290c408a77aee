"""The step-based epoch loop shared by the scene trainers (detect, segment): steps with progress,
a validation pass per epoch, `metrics.jsonl`, last/best weights files, a checkpoint after every
epoch, and Ctrl-C -> checkpoint + Interrupted. Each trainer supplies what differs as closures."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dlcli.errors import DataError
from dlcli.progress import Reporter
from dlcli.training.checkpoint import Interrupted


@dataclass(frozen=True)
class TrainSummary:
    out: Path
    best: Path
    epochs: int
    metrics: dict[str, float]
    seconds: float


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


def run_epochs(
    *,
    out: Path,
    epochs: int,
    steps_per_epoch: int,
    progress: dict[str, Any],
    best_key: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    reporter: Reporter,
    step_loss: Callable[[int, int], torch.Tensor],
    evaluate: Callable[[], tuple[dict[str, float], float]],
    weights_meta: Callable[[dict[str, Any], int], dict[str, Any]],
    checkpoint: Callable[[], Path],
    clip_params: list[torch.nn.Parameter] | None = None,
    clip_norm: float = 10.0,
) -> TrainSummary:
    """Train until `progress["epoch"] == epochs`, resuming mid-epoch from `progress`.

    `step_loss(epoch, step)` returns the loss of one batch (under the runtime's autocast);
    `evaluate()` returns (metrics to log, the score that picks the best weights);
    `weights_meta(metrics, global_step)` the metadata saved beside the weights."""
    from dlcli.weights.store import save_weights_file

    best_path = out / "best.safetensors"
    metrics: dict[str, float] = {}
    started = time.time() - float(progress["seconds"])
    model.train()
    try:
        while progress["epoch"] < epochs:
            epoch = int(progress["epoch"])
            reporter.start(f"epoch {epoch + 1}/{epochs}", total=steps_per_epoch, unit="step")
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
                if clip_params is not None:
                    torch.nn.utils.clip_grad_norm_(clip_params, clip_norm)
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
    return TrainSummary(out, best_path, epochs, metrics, time.time() - started)
