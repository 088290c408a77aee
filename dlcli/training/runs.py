"""Reading run folders back (`dl runs list | show | plot | report`): what state each run is in,
its per-epoch table, an overlay of several runs' curves, and a self-contained HTML report.

Nothing here trains or imports torch. A folder that is not a healthy run (a truncated
metrics.jsonl line, a missing checkpoint, a foreign folder, a run whose process died without
saying so) is reported as "broken" with the reason: reading runs never raises on their content.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from dlcli.atomic import atomic_target, process_alive
from dlcli.errors import InputError
from dlcli.training.listeners import CURVES_PNG, EVAL_PICTURES, curve_data
from dlcli.training.run import BEST, CHECKPOINT, CONFIG, LAST, METRICS, STATE, SPLITS, read_metrics

RUN_FILES = (STATE, METRICS, CHECKPOINT, CONFIG)
MAX_DEPTH = 3  # how deep `list` looks for runs below the folder it is given
MAX_JSON_BYTES = 16 * 1024 * 1024  # run.json, config.json, a safetensors header: larger is not ours
MAX_INLINE_BYTES = 8 * 1024 * 1024  # a picture larger than this is named in a report, not inlined
MAX_TABLE_ROWS = 500
PICTURES = ("curves.png",) + EVAL_PICTURES + ("misclassified.png",)
_HELD_OUT = ("val", "test", "eval")


@dataclass
class RunInfo:
    """One row of `dl runs list`."""

    path: Path
    task: str | None
    state: str  # finished / interrupted / running / broken
    reason: str | None = None  # why broken (or a note about the state)
    epochs: float | None = None
    steps: int | None = None
    best: dict[str, Any] | None = None
    seconds: float | None = None
    weights: list[str] = field(default_factory=list)
    started: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


# --- reading one folder ---------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    """JSON of a small file; ValueError when it is not (too big, unreadable, not JSON)."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ValueError(f"{path.name} is larger than {MAX_JSON_BYTES // 2**20} MiB")
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path.name} cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not text") from None


def bad_metric_lines(path: Path) -> list[int]:
    """Line numbers (1-based) of metrics.jsonl that are not a metrics row (e.g. cut short by a kill)."""
    bad = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    bad.append(n)
                    continue
                if not isinstance(row, dict) or "step" not in row or row.get("split") not in SPLITS:
                    bad.append(n)
    except OSError:
        return []
    return bad


def looks_like_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def inspect_run(folder: Path) -> RunInfo:
    """The state of the run in `folder`, "broken" with a reason when it is not a healthy run."""
    folder = Path(folder)
    if not folder.is_dir():
        return RunInfo(folder, None, "broken", "not a folder")
    if not looks_like_run(folder):
        return RunInfo(folder, None, "broken", f"not a run folder (no {STATE}, {METRICS} or {CHECKPOINT})")
    weights = sorted(p.name for p in folder.glob("*.safetensors") if p.is_file())
    try:
        state = _read_json(folder / STATE) if (folder / STATE).exists() else None
    except ValueError as exc:
        return RunInfo(folder, None, "broken", f"{STATE} is unreadable: {exc}", weights=weights)
    if state is None:
        return RunInfo(folder, None, "broken", f"{STATE} is missing (a run of an older dlcli, or not one of ours)",
                       weights=weights)
    if not isinstance(state, dict) or not isinstance(state.get("task"), str) or "state" not in state:
        return RunInfo(folder, None, "broken", f"{STATE} is not a dlcli run's (no task or state)", weights=weights)
    info = RunInfo(folder, state["task"], str(state["state"]), None, _num(state.get("epoch")),
                   _int(state.get("step")), state.get("best") if isinstance(state.get("best"), dict) else None,
                   _num(state.get("seconds")), weights, state.get("started"))
    problems = []
    bad = bad_metric_lines(folder / METRICS)
    if bad:
        problems.append(f"{METRICS} line {bad[0]} is truncated or not a metrics row"
                        + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    has_checkpoint = (folder / CHECKPOINT).is_file()
    if info.state == "running" and not process_alive(state.get("pid")):
        problems.append(f"its process ({state.get('pid')}) is gone without finishing (crashed or killed)"
                        + (f"; --resume {folder} continues from the checkpoint" if has_checkpoint else ""))
    if info.state in ("finished", "interrupted") and not has_checkpoint:
        problems.append(f"{CHECKPOINT} is missing" + (" (--resume cannot continue it)"
                                                      if info.state == "interrupted" else ""))
    if info.state == "finished" and not (folder / LAST).is_file():
        problems.append(f"{LAST} is missing")
    if info.state == "finished" and not (folder / METRICS).is_file():
        problems.append(f"{METRICS} is missing")
    if info.state not in ("running", "finished", "interrupted"):
        problems.append(f"unknown state {info.state!r} in {STATE}")
    if problems:
        info.state, info.reason = "broken", "; ".join(problems)
    return info


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def list_runs(root: Path, depth: int = MAX_DEPTH) -> list[RunInfo]:
    """Every run below `root` (itself, its sub-folders, and theirs down to `depth`): runs, and
    folders that are neither a run nor hold one (listed as broken)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError(f"{root} does not exist; give the folder your runs are in (default runs/)")
    if not root.is_dir():
        raise InputError(f"{root} is a file, not a folder of runs")
    if looks_like_run(root):
        return [inspect_run(root)]
    found: list[RunInfo] = []
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise InputError(f"cannot read {root} ({exc.strerror or exc})") from None
    for child in children:
        if looks_like_run(child):
            found.append(inspect_run(child))
        elif depth > 1 and _holds_runs(child, depth - 1):
            found.extend(list_runs(child, depth - 1))
        else:
            found.append(inspect_run(child))
    return found


def _holds_runs(folder: Path, depth: int) -> bool:
    try:
        children = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return False
    return any(looks_like_run(c) or (depth > 1 and _holds_runs(c, depth - 1)) for c in children)


def open_run(path: Path) -> tuple[RunInfo, list[dict[str, Any]]]:
    """(the run's state, its metrics rows) for `show`, `plot` and `report`; a folder that is no
    run at all is refused (an InputError), a broken run is read as far as it goes."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; give a run folder (see `dl runs list`)")
    info = inspect_run(path)
    if info.task is None and not (path / METRICS).is_file():
        raise InputError(f"{path} is not a run: {info.reason}")
    return info, read_metrics(path / METRICS)


# --- one run in detail --------------------------------------------------------------------------


def column(split: str, key: str) -> str:
    """A metric's name across splits: held-out metrics are often already prefixed (val_map50)."""
    return key if key.startswith(f"{split}_") else f"{split}_{key}"


def epoch_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per reported step (its train and held-out rows merged): (columns, rows)."""
    merged: dict[int, dict[str, Any]] = {}
    columns = ["epoch", "step"]
    for r in rows:
        split = str(r.get("split"))
        out = merged.setdefault(int(r["step"]), {"epoch": r.get("epoch"), "step": int(r["step"])})
        if r.get("epoch") is not None:
            out["epoch"] = r["epoch"]
        for key, value in r.items():
            if key in ("step", "epoch", "split"):
                continue
            name = "time" if key == "time" else column(split, key)
            out[name] = value
            if name not in columns:
                columns.append(name)
    if all(r.get("epoch") is None for r in merged.values()):
        columns.remove("epoch")
    return columns, [merged[k] for k in sorted(merged)]


def files_of(folder: Path) -> list[dict[str, Any]]:
    """The run folder's files with their sizes (sub-folders counted as one entry)."""
    out = []
    for p in sorted(folder.iterdir()):
        try:
            if p.is_dir():
                out.append({"name": p.name + "/", "bytes": sum(f.stat().st_size for f in p.rglob("*") if f.is_file())})
            else:
                out.append({"name": p.name, "bytes": p.stat().st_size})
        except OSError:
            out.append({"name": p.name, "bytes": None})
    return out


def show(path: Path) -> dict[str, Any]:
    """`dl runs show RUN`: the run's state, config, per-epoch table and files."""
    info, rows = open_run(path)
    try:
        config = _read_json(info.path / CONFIG)
    except ValueError as exc:
        config = {"error": str(exc)}
    columns, table = epoch_table(rows)
    if "time" in columns:  # wall time last, after the metrics
        columns = [c for c in columns if c != "time"] + ["time"]
    state: Any
    try:
        state = _read_json(info.path / STATE)
    except ValueError:
        state = {}
    return {"run": info.to_dict(), "config": config, "columns": columns, "rows": table,
            "files": files_of(info.path), "notes": list(state.get("notes", [])) if isinstance(state, dict) else []}


# --- several runs on one figure -----------------------------------------------------------------


def series(rows: list[dict[str, Any]], metric: str, x: str | None = None) -> tuple[list[Any], list[Any], str] | None:
    """(x by epoch or step, y, x's name) of `metric` in `rows`: "split/key" (e.g. train/loss) or a
    name as `dl runs show` prints it (val_map50, train_loss, test_accuracy), or a bare key looked
    up in the held-out splits first (accuracy -> test or val accuracy), then train. `x` forces the
    x axis ("step" or "epoch")."""
    wanted: list[tuple[str, str]] = []
    if "/" in metric:
        split, key = metric.split("/", 1)
        wanted = [(split, key)]
    else:
        for split in _HELD_OUT + ("train",):
            wanted.append((split, metric))
            if metric.startswith(f"{split}_"):
                wanted.insert(0, (split, metric.removeprefix(f"{split}_")))
    for split, key in wanted:
        picked = [r for r in rows if r.get("split") == split and isinstance(r.get(key), (int, float))
                  and not isinstance(r.get(key), bool)]
        if picked:
            axis = x or ("epoch" if all(r.get("epoch") is not None for r in picked) else "step")
            return [r.get(axis) for r in picked], [float(r[key]) for r in picked], axis
    return None


def metric_names(rows: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in rows:
        for key, value in r.items():
            if key not in ("step", "epoch", "split", "time") and isinstance(value, (int, float)):
                name = column(str(r.get("split")), key)
                if name not in names:
                    names.append(name)
    return names


def plot(paths: list[Path], metric: str, out: Path) -> dict[str, Any]:
    """`dl runs plot`: one figure with `metric` of every run (one line each); returns what it drew."""
    from dlcli import plots

    if not paths:
        raise InputError("give at least one run folder")
    if not plots.available():
        raise InputError(f"dl runs plot draws with matplotlib: {plots.MISSING.split(': ', 1)[1]}")
    runs = []
    for p in paths:
        info, rows = open_run(p)
        found = series(rows, metric)
        if found is None:
            have = ", ".join(metric_names(rows)[:12]) or "no metrics"
            raise InputError(f"{p} has no metric {metric!r}; it has: {have}")
        runs.append((p, info, rows, found[2]))
    # One x axis for all: epochs when every run has them, else steps.
    x_name = "epoch" if all(axis == "epoch" for *_, axis in runs) else "step"
    drawn = []
    for p, info, rows, _ in runs:
        xs, ys, _ = series(rows, metric, x_name) or ([], [], x_name)
        drawn.append({"label": str(p), "x": xs, "y": ys})
    plots.compare(drawn, out, metric=metric, x=x_name)
    return {"out": str(out), "metric": metric, "x": x_name, "runs": [str(info.path) for _, info, _, _ in runs],
            "points": [len(d["y"]) for d in drawn]}


# --- a report a colleague can open --------------------------------------------------------------


def safetensors_metadata(path: Path) -> dict[str, Any]:
    """The "__metadata__" of a .safetensors file (its header only; nothing is loaded)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return {}
            (n,) = struct.unpack("<Q", head)
            if n > MAX_JSON_BYTES:
                return {}
            header = json.loads(f.read(n).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return meta if isinstance(meta, dict) else {}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pictures(folder: Path) -> Iterator[tuple[str, Path]]:
    for name in PICTURES:
        if (folder / name).is_file():
            yield name, folder / name
    samples = sorted((folder / "samples").glob("epoch_*.png")) if (folder / "samples").is_dir() else []
    if samples:
        yield f"samples/{samples[-1].name}", samples[-1]


def _data_uri(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_INLINE_BYTES:
            return None
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "–"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    thead = f"<thead><tr>{head}</tr></thead>" if any(columns) else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.state{display:inline-block;padding:.1em .6em;border-radius:.8em;color:#fff;font-size:.85em}
.finished{background:#009E73}.interrupted{background:#E69F00}.running{background:#0072B2}.broken{background:#D55E00}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left}th{background:#f4f4f4}figure{margin:1em 0}figcaption{color:#555;font-size:.85em}
img{max-width:100%;border:1px solid #eee}.muted{color:#666}
"""


def report(path: Path, out: Path) -> dict[str, Any]:
    """`dl runs report`: one HTML page with everything inlined (config, curves, evaluation
    pictures, per-epoch table, files and provenance), written atomically to `out`."""
    from dlcli import __version__, plots

    info, rows = open_run(path)
    e = html.escape
    shown = show(info.path)
    parts = [f"<h1>{e(info.task or 'run')}: {e(info.path.resolve().name)}</h1>",
             f'<p><span class="state {e(info.state)}">{e(info.state)}</span> '
             f'<span class="muted">{e(str(info.path.resolve()))}</span></p>']
    if info.reason:
        parts.append(f"<p><b>Why:</b> {e(info.reason)}</p>")
    summary = [["epochs", info.epochs], ["steps", info.steps], ["wall time", duration(info.seconds)],
               ["best", f"{info.best['metric']} {_fmt(info.best.get('value'))} (step {info.best.get('step')})"
                if info.best else None], ["started", info.started], ["weights", ", ".join(info.weights) or None]]
    parts.append(_table(["", ""], summary))
    for note in shown["notes"]:
        parts.append(f'<p class="muted">note: {e(note)}</p>')

    parts.append("<h2>Curves</h2>")
    pictures = dict(_pictures(info.path))
    curves_uri = None
    if CURVES_PNG not in pictures and rows and plots.available():
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:  # draw it for the page; the run folder is left as it is
            drawn = plots.curves(curve_data(rows, info.task, f"{info.task}: {info.path.resolve().name}"),
                                 Path(tmp) / CURVES_PNG)
            curves_uri = _data_uri(drawn)
    elif CURVES_PNG in pictures:
        curves_uri = _data_uri(pictures[CURVES_PNG])
    parts.append(f'<figure><img alt="training curves" src="{curves_uri}"></figure>' if curves_uri else
                 f'<p class="muted">no curves ({"no metrics yet" if not rows else plots.MISSING})</p>')

    evaluation = [(name, p) for name, p in pictures.items() if name != CURVES_PNG]
    if evaluation:
        parts.append("<h2>Evaluation</h2>")
        for name, p in evaluation:
            uri = _data_uri(p)
            parts.append(f'<figure><img alt="{e(name)}" src="{uri}"><figcaption>{e(name)}</figcaption></figure>'
                         if uri else f'<p class="muted">{e(name)}: larger than {MAX_INLINE_BYTES // 2**20} MiB, '
                                     "not inlined</p>")

    parts.append("<h2>Per epoch</h2>" if "epoch" in shown["columns"] else "<h2>Per report</h2>")
    table_rows = shown["rows"][-MAX_TABLE_ROWS:]
    if len(shown["rows"]) > MAX_TABLE_ROWS:
        parts.append(f'<p class="muted">the last {MAX_TABLE_ROWS} of {len(shown["rows"])} rows</p>')
    parts.append(_table(shown["columns"], [[r.get(c) for c in shown["columns"]] for r in table_rows]))

    parts.append("<h2>Config</h2>")
    config = shown["config"] if isinstance(shown["config"], dict) else {"config": shown["config"]}
    parts.append(_table(["option", "value"], [[k, v] for k, v in sorted(config.items())]))

    parts.append("<h2>Files and provenance</h2>")
    file_rows = []
    for f in shown["files"]:
        digest = sha256(info.path / f["name"]) if f["name"].endswith(".safetensors") else None
        file_rows.append([f["name"], f["bytes"], digest])
    parts.append(_table(["file", "bytes", "SHA-256"], file_rows))
    for name in (BEST, LAST):
        meta = safetensors_metadata(info.path / name) if (info.path / name).is_file() else {}
        if meta:
            parts.append(f"<p><b>{e(name)}</b> metadata</p>")
            parts.append(_table(["key", "value"], [[k, _clip(v)] for k, v in sorted(meta.items())]))
    try:
        state = _read_json(info.path / STATE)
    except ValueError:
        state = None
    if isinstance(state, dict):
        parts.append(f"<p><b>{STATE}</b></p><pre>{e(json.dumps(state, indent=2, sort_keys=True))}</pre>")
    made = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f'<p class="muted">made by dlcli {e(__version__)} (`dl runs report`) on {made}</p>')
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{e(info.task or "run")}: '
            f"{e(info.path.resolve().name)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    with atomic_target(Path(out)) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"out": str(out), "run": str(info.path), "state": info.state,
            "pictures": [n for n, _ in pictures.items()] or ([CURVES_PNG] if curves_uri else []),
            "bytes": Path(out).stat().st_size}


def _clip(value: Any, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "…"


def duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"
