"""The run folder every trainer writes, and the one place a trainer reports a metric.

Layout (the same for train-mnist, classify train, detect train, segment train, caption train,
generate train and play-dqn train):

    config.json        the run's options (what --resume must continue)
    run.json           task, state (running / finished / interrupted), started/updated times,
                       wall seconds, steps and epochs done, the best metric so far
    metrics.jsonl      one JSON object per report: {"step", "epoch", "split", "time", <metrics>}
    checkpoint.pt      everything needed to continue (trainer-specific payload, see checkpoint.py)
    last.safetensors   the latest weights, with dlcli metadata (`--weights-file` reads it)
    best.safetensors   the weights with the best held-out metric so far

`RunFolder.open` refuses a folder that already holds a run unless `resume` (continue it) or
`force` (start over: only the files named above are removed, never anything else). `log()` is the
single place metrics are written; listeners (curves, TensorBoard) subscribe to it.

The listeners' files (dlcli/training/listeners.py), attached to every run by `open`:

    curves.png         training loss, the task's metric and the learning rate, redrawn every epoch
    curves.json        the numbers curves.png shows
    events.out.tfevents.*   TensorBoard scalars (and `log_image` pictures), with tensorboard installed
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from dlcli.atomic import atomic_target
from dlcli.errors import InputError

if TYPE_CHECKING:
    from dlcli.progress import Reporter

CONFIG = "config.json"
STATE = "run.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
LAST = "last.safetensors"
BEST = "best.safetensors"
# Files a run owns: --force removes exactly these (and the listeners' own outputs).
OWNED = (CONFIG, STATE, METRICS, CHECKPOINT, LAST, BEST)
SPLITS = ("train", "val", "test", "eval")

Listener = Callable[["RunFolder", dict[str, Any]], None]
# Notes already given in this process (each is said once, however many runs it opens).
_TOLD: set[str] = set()


def holds_run(folder: Path) -> bool:
    """True when `folder` has the files of a run (a checkpoint, a state file or metrics)."""
    return any((folder / name).exists() for name in (CHECKPOINT, STATE, METRICS))


def check_run_folder(path: Path, *, resume: bool, force: bool, refuse: bool = True, members: bool = False) -> None:
    """What cannot be done in `path`, refused before anything is loaded or written: --resume of
    a folder without a checkpoint, and (`refuse`) a new run into a folder that holds one unless
    `force`. `members`: an ensemble keeps its nets' runs in member-N subfolders."""
    path = Path(path).expanduser()
    places = [path, path / "member-1"] if members else [path]
    if resume and force:
        raise InputError("give either --resume DIR (continue the run) or --force (start over), not both")
    if resume and not any((p / CHECKPOINT).is_file() for p in places):
        raise InputError(f"--resume {path}: no run to continue there (no {CHECKPOINT}); give the folder of "
                         "an earlier run")
    if not resume and refuse and not force and any(holds_run(p) for p in places):
        raise InputError(f"{path} already holds a run; continue it with --resume {path}, start over with "
                         "--force, or choose another --out")


@dataclass
class RunFolder:
    """A training run's folder. Only the main process (rank 0 under DDP) writes: `writer=False`
    turns every write into a no-op so trainers need no `if rank == 0` around reporting."""

    path: Path
    task: str
    writer: bool = True
    listeners: list[Listener] = field(default_factory=list)
    owned_extra: tuple[str, ...] = ()
    _started: float = field(default_factory=time.time)
    _state: dict[str, Any] = field(default_factory=dict)
    reporter: Reporter | None = None

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, task: str, config: dict[str, Any], resume: bool = False,
             force: bool = False, writer: bool = True, owned_extra: tuple[str, ...] = (),
             reporter: Reporter | None = None, listen: bool = True) -> "RunFolder":
        """Prepare `path` for a new run, or check it holds one to continue (`resume`). With
        `listen` (the default) the writing process also draws curves and writes TensorBoard
        events (dlcli/training/listeners.py); `reporter` hears the one-time notes (e.g. how to get
        TensorBoard), which run.json keeps too."""
        path = Path(path).expanduser()
        if path.exists() and not path.is_dir():
            raise InputError(f"--out {path} is a file, not a folder; choose a folder for the run")
        # Other DDP ranks see rank 0's fresh files: only the writing rank refuses a folder.
        check_run_folder(path, resume=resume, force=force, refuse=writer)
        run = cls(path, task, writer, owned_extra=owned_extra, reporter=reporter)
        if not writer:
            return run
        if force and not resume:
            run._remove_owned()
        path.mkdir(parents=True, exist_ok=True)
        if resume:
            run._state = run.read_state()
            run._state.update(state="running", pid=os.getpid())
        else:
            run.write_json(CONFIG, {"task": task, **config})
            run._state = {"task": task, "state": "running", "started": _now(), "pid": os.getpid(),
                          "seconds": 0.0, "step": 0, "epoch": 0}
        run._started = time.time() - float(run._state.get("seconds", 0.0))
        run._write_state()
        if listen:
            from dlcli.training.listeners import standard_listeners

            run.listeners.extend(standard_listeners(run, run.note))
        return run

    def _remove_owned(self) -> None:
        from dlcli.training.listeners import owned_outputs

        for target in [self.path / name for name in OWNED + self.owned_extra] + owned_outputs(self.path):
            if target.is_file() or target.is_symlink():
                target.unlink()

    def note(self, text: str) -> None:
        """A one-line notice about the run (e.g. pictures skipped): kept in run.json's "notes" and
        told to the reporter once per process."""
        notes = self._state.setdefault("notes", [])
        if text not in notes:
            notes.append(text)
            if self.writer and self.path.is_dir():
                self._write_state()
        if text not in _TOLD and self.reporter is not None:
            _TOLD.add(text)
            self.reporter.message(text)

    # --- paths ---------------------------------------------------------------------------------

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS

    @property
    def step(self) -> int:
        """The step of the latest report (what `log_image` of the same moment should use)."""
        return int(self._state.get("step", 0))

    @property
    def takes_images(self) -> bool:
        """Whether `log_image` goes anywhere (TensorBoard installed, this process writes): a
        trainer skips drawing pictures nobody keeps."""
        return self.writer and any(hasattr(listener, "image") for listener in self.listeners)

    # --- reporting -----------------------------------------------------------------------------

    def log(self, split: str, metrics: dict[str, Any], *, step: int, epoch: float | None = None) -> dict[str, Any]:
        """Record `metrics` of `split` (train / val / test / eval) at `step` (and `epoch`): one line
        of metrics.jsonl, the run's state, then every listener (curves, TensorBoard)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        row: dict[str, Any] = {"step": int(step), "epoch": None if epoch is None else round(float(epoch), 4),
                               "split": split, "time": round(time.time() - self._started, 2)}
        for key, value in metrics.items():
            row[key] = _plain(value)
        if not self.writer:
            return row
        with open(self.metrics_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self._state.update(step=int(step), seconds=row["time"], updated=_now())
        if epoch is not None:
            self._state["epoch"] = row["epoch"]
        self._write_state()
        for listener in self.listeners:
            listener(self, row)
        return row

    def log_image(self, tag: str, image: Any, step: int) -> None:
        """A picture for TensorBoard (a PIL image, or an HxW / HxWxC uint8 array) at `step`, e.g.
        misclassified digits or a fixed latent grid per epoch. Does nothing without tensorboard
        or outside the writing process."""
        if not self.writer:
            return
        for listener in self.listeners:
            image_fn = getattr(listener, "image", None)
            if image_fn is not None:
                image_fn(tag, image, step)

    def note_best(self, metric: str, value: float, *, step: int, epoch: float | None = None) -> None:
        """Remember the best held-out metric (shown by `dl runs list`)."""
        self._state["best"] = {"metric": metric, "value": _plain(value), "step": int(step),
                               "epoch": None if epoch is None else round(float(epoch), 4)}
        if self.writer:
            self._write_state()

    def rows(self, split: str | None = None) -> list[dict[str, Any]]:
        return [r for r in read_metrics(self.metrics_file) if split is None or r.get("split") == split]

    # --- weights and state -----------------------------------------------------------------------

    def save_weights(self, which: str, state_dict: dict[str, Any], meta: dict[str, Any]) -> str | None:
        """Write last.safetensors or best.safetensors (atomically, with dlcli metadata); returns
        the SHA-256 (None where this process does not write)."""
        from dlcli.weights.store import save_weights_file

        if which not in ("last", "best"):
            raise ValueError(f"which must be 'last' or 'best', got {which!r}")
        if not self.writer:
            return None
        state = {k: v.contiguous() for k, v in state_dict.items()}  # channels_last -> contiguous
        return save_weights_file(self.path / (LAST if which == "last" else BEST), state, meta)

    def finish(self, **summary: Any) -> None:
        self._state.update(state="finished", finished=_now(), seconds=round(time.time() - self._started, 2),
                           **{k: _plain(v) for k, v in summary.items()})
        if self.writer:
            self._write_state()
        self.close()

    def interrupted(self) -> None:
        self._state.update(state="interrupted", seconds=round(time.time() - self._started, 2), updated=_now())
        if self.writer:
            self._write_state()
        self.close()

    def close(self) -> None:
        for listener in self.listeners:
            closer = getattr(listener, "close", None)
            if closer is not None:
                closer()

    @property
    def seconds(self) -> float:
        return time.time() - self._started

    def read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.path / STATE).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        if not self.writer:
            return
        with atomic_target(self.path / name) as tmp:
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")

    def _write_state(self) -> None:
        self.write_json(STATE, self._state)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl; a truncated or foreign line is skipped (a run killed mid-write
    leaves at most one)."""
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def iter_rows(path: Path, split: str, key: str) -> Iterator[tuple[int, float]]:
    """(step, value) of one metric of one split."""
    for r in read_metrics(path):
        if r.get("split") == split and isinstance(r.get(key), (int, float)):
            yield int(r["step"]), float(r[key])


def _plain(value: Any) -> Any:
    """JSON-safe numbers (tensors, numpy scalars, NaN -> None)."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    return value


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
