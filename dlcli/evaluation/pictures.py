"""The pictures of an evaluation, shared by the eval commands (`--out DIR`) and the trainers (their
run folder at the end): detection PR curves and confusion matrix, segmentation IoU bars and
confusion matrix, a caption sheet. Drawing is dlcli/plots.py; without matplotlib these return no
files and the caller says so once (plots.MISSING)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from dlcli import plots

PR = "pr.png"
CONFUSION = "confusion.png"
IOU = "iou.png"
CAPTIONS = "captions.png"
SCORES = "scores.png"


def detection(scores: Any, label: Callable[[int], str], out: Path) -> list[Path]:
    """pr.png (per-class precision-recall at IoU 0.5) and confusion.png (with background) of a
    DetectionScores, classes named by `label(index)`."""
    if not plots.available():
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [plots.pr_curves({label(c): curve for c, curve in scores.pr50.items()}, out / PR,
                               ap={label(c): v for c, v in scores.per_class_ap50.items()})]
    cm = np.asarray(scores.confusion, dtype=np.int64)
    if cm.size:
        # Only labels that occur (a COCO model has 91 indices; a scene set uses 6), background first.
        used = [0] + [i for i in range(1, len(cm)) if cm[i].any() or cm[:, i].any()]
        names = ["background"] + [label(i) for i in used[1:]]
        written.append(plots.confusion_matrix(cm[np.ix_(used, used)], names, out / CONFUSION,
                                              title="detections (IoU 0.5, score 0.5) vs truth"))
    return written


def segmentation(matrix: Any, labels: Sequence[str], out: Path) -> list[Path]:
    """iou.png (per-class IoU bars) and confusion.png (pixels, rows normalised) of a pixel
    confusion matrix (rows truth, columns prediction)."""
    if not plots.available():
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    union = m.sum(0) + m.sum(1) - tp
    iou = {name: (float(tp[i] / union[i]) if union[i] > 0 else None) for i, name in enumerate(labels)}
    return [plots.iou_bars(iou, out / IOU),
            plots.confusion_matrix(m, list(labels), out / CONFUSION, title="pixels: prediction vs truth")]


def captions(items: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """captions.png: images with their generated and reference captions."""
    if not plots.available() or not items:
        return []
    Path(out).mkdir(parents=True, exist_ok=True)
    return [plots.caption_sheet(items, Path(out) / CAPTIONS)]


def scores(by_policy: Mapping[str, Sequence[float]], out: Path) -> list[Path]:
    """scores.png: per-episode scores of each policy (the agent, a random policy)."""
    if not plots.available():
        return []
    Path(out).mkdir(parents=True, exist_ok=True)
    return [plots.score_strip(by_policy, Path(out) / SCORES)]
