"""Compare an exported graph's outputs with torch's on the same inputs: the largest absolute
difference, and how often the top-1 class agrees (per sample, or per pixel for segmenters)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from dlcli.results import ExportCheck

# How outputs are read: "scores" (class scores on axis 1: logits, Q-values, segmentation maps),
# "values" (images: only the difference means something), "detect" (boxes, labels, scores).
KINDS = ("scores", "values", "detect")


def compare(what: str, kind: str, reference: Sequence[tuple[Any, ...]], exported: Sequence[tuple[Any, ...]],
            tolerance: float | None, *, box_scale: Sequence[float] | None = None) -> ExportCheck:
    """One ExportCheck over examples. `reference[i]` and `exported[i]` are the output tuples of
    example i. For detectors, box coordinates are divided by `box_scale[i]` (the image's longer
    side), so the difference is a fraction of the image and not pixels of whatever size it had."""
    import numpy as np

    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    worst = 0.0
    agree = total = 0
    samples = 0
    note = ""
    for i, (ref, got) in enumerate(zip(reference, exported)):
        if len(ref) != len(got):
            return ExportCheck(what, samples, math.inf, None, tolerance, False,
                               f"{len(got)} outputs instead of {len(ref)}")
        for j, (r, g) in enumerate(zip(ref, got)):
            r, g = np.asarray(r), np.asarray(g)
            if r.shape != g.shape:
                return ExportCheck(what, samples, math.inf, None, tolerance, False,
                                   f"output {j} of example {i} has shape {g.shape} instead of {r.shape}")
            if r.size == 0:
                continue
            diff = np.abs(r.astype(np.float64) - g.astype(np.float64))
            if kind == "detect" and j == 0 and box_scale is not None:
                diff = diff / float(box_scale[i])
            worst = max(worst, float(diff.max()))
        r0, g0 = np.asarray(ref[0]), np.asarray(got[0])
        if kind == "scores" and r0.ndim >= 2:
            same = r0.argmax(axis=1) == g0.argmax(axis=1)
            agree += int(same.sum())
            total += int(same.size)
            samples += int(r0.shape[0])
        elif kind == "detect":
            labels_r, labels_g = np.asarray(ref[1]), np.asarray(got[1])
            agree += int((labels_r == labels_g).sum())
            total += int(labels_r.size)
            samples += 1
        else:
            samples += int(r0.shape[0]) if r0.ndim else 1
    if kind == "detect" and total == 0:
        note = "no detections on the check images (boxes not compared)"
    agreement = (agree / total) if total else (None if kind != "detect" else 1.0)
    passed = tolerance is None or worst <= tolerance
    return ExportCheck(what, samples, worst, agreement, tolerance, passed, note)
