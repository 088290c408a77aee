"""What a run folder does with each reported row besides metrics.jsonl: training curves
(curves.png, and the plotted numbers in curves.json) and TensorBoard event files.

`RunFolder.open` attaches both to every run (rank 0 only), so each trainer gets them by calling
`run.log(...)` and nothing else. Both are optional: without matplotlib the curves are skipped
(curves.json is still written), without tensorboard no event files; either way the run says once
how to get them and trains as before. Neither can stop a run: a picture that fails to draw is a
note, never an exception in the middle of training.
"""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from dlcli.atomic import atomic_target
from dlcli.training.run import read_metrics

if TYPE_CHECKING:
    from dlcli.training.run import RunFolder

CURVES_PNG = "curves.png"
CURVES_JSON = "curves.json"
EVENTS_PREFIX = "events.out.tfevents."  # TensorBoard's own file names, written into the run folder
# Evaluation pictures a trainer may leave at the end (see dlcli/plots.py).
EVAL_PICTURES = ("confusion.png", "pr.png", "iou.png", "captions.png", "scores.png")
OUTPUTS = (CURVES_PNG, CURVES_JSON) + EVAL_PICTURES
TENSORBOARD_MISSING = 'TensorBoard event files need tensorboard: pip install "dlcli[tensorboard]"'

# Row fields that are bookkeeping, not curves (they stay in metrics.jsonl and TensorBoard).
_NOT_CURVES = {"step", "epoch", "split", "time", "seconds", "images_per_s", "steps_per_s", "errors", "episodes",
               "eval_episodes", "eval_std", "epsilon", "world_size"}
_ROW_FIELDS = ("step", "epoch", "split", "time")
# The name of each task's own metric panel.
METRIC_PANEL = {"mnist": "accuracy", "classify": "accuracy", "detect": "mAP", "segment": "mIoU",
                "caption": "BLEU", "generate": "discriminator outputs", "dqn": "episode return"}

Notify = Callable[[str], None]


def tensorboard_available() -> bool:
    """True when tensorboard (which torch.utils.tensorboard needs) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def curve_data(rows: Iterable[dict[str, Any]], task: str | None = None, title: str | None = None) -> dict[str, Any]:
    """The curves of a run's metrics rows: x in epochs when every row has one (step-based runs such
    as DQN: steps), one line per (split, metric), grouped into the panels loss | the task's metric |
    learning rate. Every numeric value of a row is a point (None where the row had no value)."""
    rows = list(rows)
    x_key = "epoch" if rows and all(r.get("epoch") is not None for r in rows) else "step"
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        split = str(r.get("split"))
        for key, value in r.items():
            if key in _NOT_CURVES or isinstance(value, bool):
                continue
            if value is not None and not isinstance(value, (int, float)):
                continue
            line = lines.setdefault((split, key), {"label": _label(split, key), "split": split, "key": key,
                                                   "held_out": split != "train", "x": [], "y": []})
            line["x"].append(r.get(x_key))
            line["y"].append(_number(value))
    panels: dict[str, list[dict[str, Any]]] = {"loss": [], "metric": [], "lr": []}
    for (_, key), line in lines.items():
        if all(v is None for v in line["y"]):
            continue
        panels["lr" if key.startswith("lr") else "loss" if "loss" in key else "metric"].append(line)
    return {
        "title": title or (f"{task} run" if task else "run"),
        "task": task,
        "x": x_key,
        "rows": len(rows),
        "panels": [
            {"title": "loss", "ylabel": "loss", "lines": panels["loss"]},
            {"title": METRIC_PANEL.get(task or "", "metrics"), "ylabel": None, "lines": panels["metric"]},
            {"title": "learning rate", "ylabel": "lr", "lines": panels["lr"]},
        ],
    }


def _label(split: str, key: str) -> str:
    # Held-out metrics are often already named for their split (val_map50): no "val val_map50".
    return key if key.startswith(f"{split}_") else f"{split} {key}"


def draw_curves(folder: Path, task: str | None) -> Path | None:
    """(Re)draw curves.json and, with matplotlib, curves.png of the run in `folder` from its
    metrics.jsonl; returns the PNG's path (None without matplotlib or without rows)."""
    from dlcli import plots

    rows = read_metrics(Path(folder) / "metrics.jsonl")
    if not rows:
        return None
    data = curve_data(rows, task, f"{task}: {Path(folder).resolve().name}")
    import json

    with atomic_target(Path(folder) / CURVES_JSON) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    if not plots.available():
        return None
    return plots.curves(data, Path(folder) / CURVES_PNG)


class CurvesListener:
    """Redraws curves.png from metrics.jsonl: after every held-out row (end of an epoch), after a
    whole-epoch training row of a run with no held-out split (DCGAN), at most every `every_seconds`
    for step-based runs (DQN), and when the run closes (finished, interrupted)."""

    def __init__(self, run: RunFolder, notify: Notify, every_seconds: float = 30.0) -> None:
        self.folder = run.path
        self.task = run.task
        self.notify = notify
        self.every_seconds = every_seconds
        self._last = -math.inf
        self._held_out = False
        self._dirty = False
        self._failed = False

    def __call__(self, run: RunFolder, row: dict[str, Any]) -> None:
        self._dirty = True
        held = row.get("split") != "train"
        self._held_out = self._held_out or held
        epoch = row.get("epoch")
        if epoch is None:
            due = time.monotonic() - self._last >= self.every_seconds
        elif held:
            due = True
        else:
            due = not self._held_out and float(epoch).is_integer()
        if due:
            self.draw()

    def draw(self) -> None:
        from dlcli import plots

        self._last = time.monotonic()
        self._dirty = False
        if self._failed:
            return
        try:
            draw_curves(self.folder, self.task)
        except Exception as exc:  # a picture must never stop a training run
            self._failed = True
            self.notify(f"could not draw {CURVES_PNG} ({type(exc).__name__}: {exc}); training goes on")
            return
        if not plots.available():
            self.notify(plots.MISSING)

    def close(self) -> None:
        if self._dirty:
            self.draw()


class TensorBoardListener:
    """Writes every numeric value of every row as a TensorBoard scalar `<split>/<name>` at the
    row's step, and images given to `RunFolder.log_image`, into the run folder itself (so
    `tensorboard --logdir runs` names each run by its folder)."""

    def __init__(self, run: RunFolder, notify: Notify) -> None:
        self.folder = run.path
        self.notify = notify
        self._writer: Any = None
        self._failed = False

    def _open(self) -> Any:
        if self._writer is None and not self._failed:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.folder))
            except Exception as exc:  # e.g. a tensorboard too old for this torch
                self._failed = True
                self.notify(f"no TensorBoard event files ({type(exc).__name__}: {exc})")
        return self._writer

    def __call__(self, run: RunFolder, row: dict[str, Any]) -> None:
        writer = self._open()
        if writer is None:
            return
        for key, value in row.items():
            number = _number(value)
            if key in _ROW_FIELDS or number is None:
                continue
            writer.add_scalar(f"{row['split']}/{key}", number, global_step=int(row["step"]))
        writer.flush()  # a reader (tensorboard, dl runs) sees each epoch as it ends

    def image(self, tag: str, image: Any, step: int) -> None:
        writer = self._open()
        if writer is None:
            return
        writer.add_image(tag, as_hwc_uint8(image), global_step=int(step), dataformats="HWC")
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def as_hwc_uint8(image: Any) -> Any:
    """A PIL image or an HxW / HxWxC array (uint8, or floats in [0, 1]) as an HxWx3 uint8 array."""
    import numpy as np

    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"an image must be HxW or HxWxC (C 1, 3 or 4), got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return array[:, :, :3]


def standard_listeners(run: RunFolder, notify: Notify) -> list[Callable[..., None]]:
    """The listeners every run gets: curves always (curves.json even without matplotlib),
    TensorBoard when it is installed (else one note saying how to get it)."""
    listeners: list[Callable[..., None]] = [CurvesListener(run, notify)]
    if tensorboard_available():
        listeners.append(TensorBoardListener(run, notify))
    else:
        notify(TENSORBOARD_MISSING)
    return listeners


def owned_outputs(folder: Path) -> list[Path]:
    """The listeners' files in a run folder (what --force removes besides the run's own)."""
    found = [folder / name for name in OUTPUTS]
    found += sorted(folder.glob(EVENTS_PREFIX + "*"))
    return found
