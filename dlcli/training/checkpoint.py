"""Training checkpoints: everything needed to continue a run exactly (model, optimiser,
scheduler, scaler, RNG states, counters), saved atomically and loaded with weights_only=True.

Ctrl-C in a trainer: catch KeyboardInterrupt, `save_checkpoint(...)`, then raise
`Interrupted(path)`; the CLI prints how to continue and exits 130."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from dlcli.atomic import atomic_target
from dlcli.errors import EXIT_INTERRUPTED, DLError, InputError


class Interrupted(DLError):
    exit_code = EXIT_INTERRUPTED

    def __init__(self, checkpoint: Path, resume_hint: str = "--resume") -> None:
        super().__init__(f"interrupted; checkpoint saved to {checkpoint}; continue with {resume_hint} {checkpoint.parent}")
        self.checkpoint = checkpoint


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached)
    except ImportError:
        pass
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuplify(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: Any = None, scheduler: Any = None,
                    scaler: Any = None, progress: dict[str, Any] | None = None,
                    config: dict[str, Any] | None = None, extra_state: dict[str, Any] | None = None) -> Path:
    """`progress` holds counters (epoch, step, best metric…); `config` the run's options (JSON)
    so that --resume can check it continues the same run; `extra_state` any other tensors."""
    module = getattr(model, "module", model)  # unwrap DDP
    payload: dict[str, Any] = {
        "format": "dlcli-checkpoint-1",
        "model": module.state_dict(),
        "rng": rng_state(),
        "progress": json.dumps(progress or {}),
        "config": json.dumps(config or {}, sort_keys=True, default=str),
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        payload["scaler"] = scaler.state_dict()
    if extra_state:
        payload["extra"] = extra_state
    with atomic_target(Path(path)) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: Any = None, scheduler: Any = None,
                    scaler: Any = None, restore_rng: bool = True) -> dict[str, Any]:
    """Restore what save_checkpoint wrote; returns {"progress", "config", "extra"}."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}; give the --out folder of the run to resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path} is not a readable dlcli checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(payload, dict) or payload.get("format") != "dlcli-checkpoint-1":
        raise InputError(f"{path} is not a dlcli checkpoint")
    getattr(model, "module", model).load_state_dict(payload["model"])
    if optimizer is not None and "optimizer" in payload:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and "scheduler" in payload:
        scheduler.load_state_dict(payload["scheduler"])
    if scaler is not None and "scaler" in payload:
        scaler.load_state_dict(payload["scaler"])
    if restore_rng:
        set_rng_state(payload["rng"])
    return {
        "progress": json.loads(payload["progress"]),
        "config": json.loads(payload["config"]),
        "extra": payload.get("extra", {}),
    }
