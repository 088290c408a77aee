"""Every figure dlcli draws (training curves, run comparisons, evaluation pictures) in one house
style: white background, light grid, no top/right spines, one colour cycle, left-aligned titles.

matplotlib is optional (`pip install "dlcli[plots]"`) and imported only here, inside the functions,
with the Agg backend and without pyplot (no global figure state, no display needed): `dl --help`
never loads it. `available()` says whether pictures can be drawn; callers skip them and say once
how to get them (`MISSING`) when they cannot.

Each PNG carries the numbers it shows as JSON in a PNG text chunk ("dlcli"), so a test, or a user,
can read back exactly what was plotted (`plotted_data(path)`). Files are written atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from dlcli.atomic import atomic_target

MISSING = 'pictures (curves.png, evaluation plots) need matplotlib: pip install "dlcli[plots]"'

# One palette for every figure (colour-blind-safe, after Okabe & Ito), then greys.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
           "#7F7F7F", "#B0B0B0")
STYLE: dict[str, Any] = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.edgecolor": "#444444",
    "axes.linewidth": 0.8,
    "axes.grid": True,
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "font.size": 9,
    "lines.linewidth": 1.6,
    "lines.markersize": 3.5,
    "savefig.dpi": 100,
    "savefig.facecolor": "white",
}
# Limits that keep a figure drawable whatever a file holds (sizes a user or a file controls).
MAX_CLASSES = 100
MAX_POINTS = 100_000
MAX_SHEET = 64


def available() -> bool:
    """True when matplotlib can be imported (the `plots` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


class _Styled:
    """The house style for the duration of building and saving one figure."""

    def __enter__(self) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)  # no display; pyplot is never imported
        self._ctx = matplotlib.rc_context(STYLE)
        self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def _save(fig: Any, path: Path, data: Any) -> Path:
    """Write `fig` as a PNG at `path` (atomically), the plotted numbers in its "dlcli" text chunk."""
    path = Path(path)
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=_json_default)
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": "dlcli", "dlcli": text})
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def plotted_data(path: Path) -> Any:
    """The numbers a dlcli PNG shows (its "dlcli" text chunk), or None for another PNG."""
    from PIL import Image

    with Image.open(path) as im:
        text = getattr(im, "text", {}).get("dlcli")
    return json.loads(text) if text else None


def _finite(values: Sequence[Any]) -> list[float | None]:
    return [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]


def _colours() -> Iterator[str]:
    while True:
        yield from PALETTE


# --- training curves ------------------------------------------------------------------------------


def curves(data: Mapping[str, Any], path: Path) -> Path:
    """Training curves: `data` = {"title", "x": "epoch" | "step", "panels": [{"title", "ylabel",
    "log": bool, "lines": [{"label", "x": [...], "y": [...], "held_out": bool}]}]}, one panel per
    entry side by side (loss, the task's metric, learning rate). Held-out lines are drawn with
    markers, training lines without, so the two read apart at a glance."""
    panels = [p for p in data.get("panels", []) if p.get("lines")]
    with _Styled():
        fig = _figure(max(4.0, 3.9 * max(1, len(panels))), 3.3)
        axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
        if not panels:
            axes[0].text(0.5, 0.5, "no metrics yet", ha="center", va="center", transform=axes[0].transAxes)
        for ax, panel in zip(axes, panels):
            colours = _colours()
            for line in panel["lines"]:
                xs, ys = line["x"][:MAX_POINTS], _finite(line["y"][:MAX_POINTS])
                pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
                style = {"marker": "o"} if line.get("held_out") or len(pts) == 1 else {}
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=line["label"], color=next(colours), **style)
            ax.set_title(panel["title"])
            ax.set_xlabel(data.get("x", "step"))
            if panel.get("ylabel"):
                ax.set_ylabel(panel["ylabel"])
            if panel.get("log"):
                ax.set_yscale("log")
            if data.get("x") == "epoch":
                ax.xaxis.get_major_locator().set_params(integer=True)
            if not panel.get("log"):
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))  # lr 1e-4 reads as such
            ax.legend(loc="best")
        if data.get("title"):
            fig.suptitle(data["title"], x=0.01, ha="left", fontsize=10)
        return _save(fig, path, data)


def compare(series: Sequence[Mapping[str, Any]], path: Path, *, metric: str, x: str) -> Path:
    """Several runs' values of one metric on one axis: `series` = [{"label", "x", "y"}]."""
    data = {"metric": metric, "x": x, "series": [dict(s) for s in series]}
    with _Styled():
        fig = _figure(6.4, 3.8)
        ax = fig.subplots()
        for s, colour in zip(series, _colours()):
            pts = [(a, b) for a, b in zip(s["x"][:MAX_POINTS], _finite(s["y"][:MAX_POINTS])) if b is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 60 else None,
                    label=s["label"], color=colour)
        ax.set_title(metric)
        ax.set_xlabel(x)
        if x == "epoch":
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="best")
        return _save(fig, path, data)


# --- evaluation pictures ---------------------------------------------------------------------------


def confusion_matrix(counts: Sequence[Sequence[float]], labels: Sequence[str], path: Path, *,
                     title: str = "confusion matrix", normalize: bool = True,
                     xlabel: str = "predicted", ylabel: str = "true") -> Path:
    """A confusion matrix (rows: truth, columns: prediction), each row normalised to shares when
    `normalize` (the colour), with the raw counts written in the cells when it is small enough to
    read. E.g. MNIST: confusion_matrix(cm, [str(d) for d in range(10)], out / "confusion.png")."""
    import numpy as np

    m = np.asarray(counts, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(labels):
        raise ValueError(f"a confusion matrix must be square with one label per row; got {m.shape} and "
                         f"{len(labels)} labels")
    if len(labels) > MAX_CLASSES:
        raise ValueError(f"at most {MAX_CLASSES} classes can be drawn, got {len(labels)}")
    rows = m.sum(1, keepdims=True)
    shares = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0) if normalize else m
    n = len(labels)
    side = min(12.0, max(3.6, 0.42 * n + 1.6))
    with _Styled():
        fig = _figure(side + 0.8, side)
        ax = fig.subplots()
        ax.grid(False)
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1 if normalize else None)
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of the row" if normalize else "count")
        ax.set_xticks(range(n), labels, rotation=45 if max(map(len, labels), default=0) > 3 else 0, ha="right"
                      if max(map(len, labels), default=0) > 3 else "center")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if m[i, j]:
                        ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=7,
                                color="white" if shares[i, j] > 0.6 else "#222222")
        return _save(fig, path, {"labels": list(labels), "counts": m.tolist(), "normalize": normalize})


def pr_curves(curves_by_class: Mapping[str, Sequence[float]], path: Path, *,
              ap: Mapping[str, float] | None = None, title: str = "precision-recall (IoU 0.5)") -> Path:
    """Per-class precision-recall curves: precision at the recall points 0, 0.01, ..., 1 (COCO's
    101-point grid), one line per class, AP in the legend."""
    data = {"recall": [i / 100 for i in range(101)], "precision": {k: _finite(v) for k, v in curves_by_class.items()},
            "ap": dict(ap or {})}
    with _Styled():
        fig = _figure(5.6, 4.2)
        ax = fig.subplots()
        for (name, prec), colour in zip(list(curves_by_class.items())[:MAX_CLASSES], _colours()):
            ys = _finite(prec)
            pts = [(i / (len(ys) - 1 if len(ys) > 1 else 1), y) for i, y in enumerate(ys) if y is not None]
            label = f"{name} (AP {ap[name]:.3f})" if ap and name in ap and ap[name] is not None else name
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, color=colour)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(title)
        ax.legend(loc="lower left")
        return _save(fig, path, data)


def iou_bars(iou_by_class: Mapping[str, float | None], path: Path, *, title: str = "IoU per class") -> Path:
    """Per-class IoU as horizontal bars (classes absent from truth and prediction shown as n/a),
    the mean IoU as a dashed line."""
    names = list(iou_by_class)[:MAX_CLASSES]
    values = _finite([iou_by_class[k] if iou_by_class[k] is not None else float("nan") for k in names])
    known = [v for v in values if v is not None]
    mean = sum(known) / len(known) if known else None
    with _Styled():
        fig = _figure(5.6, max(2.6, 0.32 * len(names) + 1.4))
        ax = fig.subplots()
        ax.grid(axis="y", visible=False)
        ys = list(range(len(names)))[::-1]
        ax.barh(ys, [v or 0.0 for v in values], color=[PALETTE[0] if v is not None else PALETTE[9] for v in values])
        for y, v in zip(ys, values):
            ax.text((v or 0.0) + 0.01, y, "n/a" if v is None else f"{v:.3f}", va="center", fontsize=7)
        if mean is not None:
            ax.axvline(mean, color=PALETTE[1], linestyle="--", linewidth=1, label=f"mIoU {mean:.3f}")
            ax.legend(loc="lower right")
        ax.set_yticks(ys, names)
        ax.set_xlim(0, 1.1)
        ax.set_xlabel("IoU")
        ax.set_title(title)
        return _save(fig, path, {"iou": dict(zip(names, values)), "miou": mean})


def caption_sheet(items: Sequence[Mapping[str, Any]], path: Path, *, title: str = "generated and reference captions",
                  columns: int = 4) -> Path:
    """A sheet of images, each with its generated caption (bold) and its first references:
    `items` = [{"image": HxWx3 uint8 array, "caption": str, "references": [str, ...]}]."""
    import textwrap

    import numpy as np

    items = list(items)[:MAX_SHEET]
    cols = max(1, min(columns, len(items)))
    rows = max(1, math.ceil(len(items) / cols))
    with _Styled():
        fig = _figure(3.0 * cols, 3.6 * rows)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, item in zip(axes.flat, items):
            ax.imshow(np.asarray(item["image"]))
            refs = "\n".join(textwrap.fill(f"ref: {r}", 40) for r in list(item.get("references", []))[:2])
            ax.set_title(textwrap.fill(item["caption"], 36), fontsize=8, loc="left")
            ax.text(0, -0.04, refs, transform=ax.transAxes, va="top", fontsize=7, color="#444444")
        fig.suptitle(title, x=0.01, ha="left", fontsize=10)
        return _save(fig, path, {"captions": [{"caption": i["caption"], "references": list(i.get("references", []))}
                                              for i in items]})


def score_strip(scores: Mapping[str, Sequence[float]], path: Path, *, title: str = "score per episode") -> Path:
    """Each policy's per-episode scores as a strip of dots (one row per policy: the agent, a random
    policy), with its mean as a bar: how far apart the two are at a glance."""
    names = list(scores)
    with _Styled():
        fig = _figure(6.0, 0.8 * max(1, len(names)) + 1.3)
        ax = fig.subplots()
        ax.grid(axis="y", visible=False)
        for row, (name, colour) in enumerate(zip(names, _colours())):
            values = [v for v in _finite(list(scores[name])[:MAX_POINTS]) if v is not None]
            y = len(names) - 1 - row
            # A small fixed jitter (no randomness) so equal scores stay visible.
            jitter = [((i * 7919) % 13 - 6) / 40 for i in range(len(values))]
            ax.scatter(values, [y + j for j in jitter], color=colour, alpha=0.75, s=18, label=name)
            if values:
                mean = sum(values) / len(values)
                ax.plot([mean, mean], [y - 0.32, y + 0.32], color=colour, linewidth=2.5)
                ax.text(mean, y + 0.36, f"mean {mean:.1f}", ha="center", fontsize=7, color=colour)
        ax.set_yticks(range(len(names)), names[::-1])
        ax.set_ylim(-0.6, len(names) - 0.2)
        ax.set_xlabel("score")
        ax.set_title(title)
        return _save(fig, path, {"scores": {k: _finite(list(v)) for k, v in scores.items()}})
