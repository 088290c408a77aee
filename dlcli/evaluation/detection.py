"""Detection metrics (mAP, COCO-style) and the evaluator that runs a detector over held-out samples.

Our own implementation (NumPy only), so `dl detect eval` needs no pycocotools:
- detections are matched per class, greedily in descending score order, each to the unmatched
  ground-truth box of highest IoU (at least the threshold), as COCO does;
- precision is made monotone (the envelope) and sampled at 101 recall points 0, 0.01, …, 1;
- a class with no ground truth in the whole set is left out of the mean (COCO: AP = -1);
- mAP@0.5:0.95 averages over IoU thresholds 0.50, 0.55, …, 0.95.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from dlcli.evaluation.batching import batched
from dlcli.progress import NullReporter, Reporter

if TYPE_CHECKING:
    import torch

COCO_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class ImageBoxes:
    """Boxes of one image (xyxy), their labels and, for detections, their scores."""

    boxes: np.ndarray  # (N, 4)
    labels: np.ndarray  # (N,)
    scores: np.ndarray | None = None  # (N,), detections only

    @classmethod
    def of(cls, boxes: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[int] | np.ndarray,
           scores: Sequence[float] | np.ndarray | None = None) -> "ImageBoxes":
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
        s = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(b) != len(lab) or (s is not None and len(s) != len(b)):
            raise ValueError("boxes, labels and scores must have the same length")
        return cls(b, lab, s)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _match_class(preds: Sequence[ImageBoxes], gts: Sequence[ImageBoxes], cls: int,
                 thr: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, true-positive flags) of every detection of `cls`, sorted by score; and the GT count."""
    scores: list[float] = []
    flags: list[bool] = []
    n_gt = 0
    for pred, gt in zip(preds, gts):
        g = gt.boxes[gt.labels == cls]
        n_gt += len(g)
        keep = pred.labels == cls
        p = pred.boxes[keep]
        s = pred.scores[keep] if pred.scores is not None else np.ones(len(p))
        order = np.argsort(-s, kind="stable")
        p, s = p[order], s[order]
        ious = box_iou(p, g)
        taken = np.zeros(len(g), dtype=bool)
        for i in range(len(p)):
            best, best_iou = -1, thr
            for j in range(len(g)):
                if not taken[j] and ious[i, j] >= best_iou:
                    best, best_iou = j, ious[i, j]
            if best >= 0:
                taken[best] = True
            scores.append(float(s[i]))
            flags.append(best >= 0)
    order = np.argsort(-np.asarray(scores), kind="stable")
    return np.asarray(scores)[order], np.asarray(flags, dtype=bool)[order], n_gt


def average_precision(tp: np.ndarray, n_gt: int) -> float:
    """COCO 101-point interpolated AP of detections already sorted by score (tp: bool flags)."""
    if n_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1)
    # Envelope: precision at recall r is the best precision at any recall >= r.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _RECALL_POINTS, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


@dataclass(frozen=True)
class DetectionScores:
    map50: float
    map50_95: float
    per_class_ap50: dict[int, float] = field(default_factory=dict)
    per_class_ap50_95: dict[int, float] = field(default_factory=dict)
    images: int = 0
    ground_truth: int = 0


def mean_average_precision(preds: Sequence[ImageBoxes], gts: Sequence[ImageBoxes],
                           thresholds: Sequence[float] = COCO_THRESHOLDS) -> DetectionScores:
    """mAP@0.5 and mAP@(thresholds) over the classes that have ground truth."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} images")
    classes = sorted({int(c) for g in gts for c in g.labels})
    ap50: dict[int, float] = {}
    ap_all: dict[int, float] = {}
    total_gt = 0
    for cls in classes:
        per_thr = []
        for thr in thresholds:
            _, tp, n_gt = _match_class(preds, gts, cls, float(thr))
            per_thr.append(average_precision(tp, n_gt))
        _, tp50, n_gt = _match_class(preds, gts, cls, 0.5)
        total_gt += n_gt
        ap50[cls] = average_precision(tp50, n_gt)
        ap_all[cls] = float(np.mean(per_thr))
    m50 = float(np.mean(list(ap50.values()))) if ap50 else float("nan")
    mall = float(np.mean(list(ap_all.values()))) if ap_all else float("nan")
    return DetectionScores(m50, mall, ap50, ap_all, len(gts), total_gt)


# --- the evaluator -------------------------------------------------------------------------------


Sample = tuple[Any, dict[str, Any]]  # image tensor (3, H, W) in [0, 1]; target with boxes, labels


def evaluate_detector(model: torch.nn.Module, samples: Iterable[Sample], runtime: Any,
                      *, batch_size: int = 8, reporter: Reporter | None = None, total: int | None = None) -> DetectionScores:
    """Run `model` over (image, target) samples and score it (mAP@0.5, mAP@0.5:0.95)."""
    reporter = reporter or NullReporter()
    preds: list[ImageBoxes] = []
    gts: list[ImageBoxes] = []
    was_training = model.training
    model.eval()
    reporter.start("evaluating", total=total, unit="img")

    def flush(batch: list[Sample]) -> None:
        with runtime.inference():
            outs = model([runtime.to(x) for x, _ in batch])
        for (_, t), o in zip(batch, outs):
            preds.append(ImageBoxes.of(o["boxes"].float().cpu().numpy(), o["labels"].cpu().numpy(),
                                       o["scores"].float().cpu().numpy()))
            gts.append(ImageBoxes.of(t["boxes"].numpy(), t["labels"].numpy()))
        reporter.advance(len(batch))

    try:
        for batch in batched(samples, batch_size):
            flush(batch)
    finally:
        reporter.finish()
        model.train(was_training)
    return mean_average_precision(preds, gts)
