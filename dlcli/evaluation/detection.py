"""Detection metrics (COCO's box AP/AR) and the evaluator that runs a detector over held-out samples.

Our own implementation (NumPy only), so `dl detect eval` needs no pycocotools, following the rules of
pycocotools' COCOeval (bbox) one by one, so that figures on COCO-format data equal published ones:
- every ground-truth box counts, however small; crowd boxes are "ignore" regions: a detection that
  matches one is neither a true nor a false positive, and a crowd box may absorb any number of
  detections. A detection's overlap with a crowd box is intersection over the detection's own area;
- each image and category keeps its 100 highest-scoring detections (maxDets; AR also at 1 and 10);
- detections are matched per image and category, in descending score order (a stable sort), each
  to the unmatched ground truth of highest IoU at least the threshold, preferring a real box over an
  ignore region once it has one;
- area ranges all/small/medium/large (< 32², 32²..96², > 96² px, ground truth by its `area` field):
  a ground truth outside the range is ignored, and so is an unmatched detection outside it;
- precision is made monotone (the envelope) and read at 101 recall points 0, 0.01, …, 1; AP is
  computed per category, then averaged over the categories that have ground truth (COCO: AP = -1,
  here NaN, for the others), and over IoU thresholds 0.50, 0.55, …, 0.95 (COCOeval's own values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from dlcli.evaluation.batching import over_batches
from dlcli.progress import Reporter

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime

if TYPE_CHECKING:
    import torch

# COCOeval builds both grids with linspace; the same floats (0.8999999999999999 among them) keep a
# match on an IoU that sits exactly on a threshold the same as there.
COCO_THRESHOLDS: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETS: tuple[int, int, int] = (1, 10, 100)
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                               "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")
"""COCOeval.stats, in its order (AP@[.5:.95], AP@.5, AP@.75, AP by area; AR at 1/10/100 dets, AR by area)."""


@dataclass(frozen=True)
class ImageBoxes:
    """Boxes of one image (xyxy), their labels and, for detections, their scores; for ground truth
    optionally crowd flags (ignore regions) and areas (COCO's `area` field; default: the box's)."""

    boxes: np.ndarray  # (N, 4)
    labels: np.ndarray  # (N,)
    scores: np.ndarray | None = None  # (N,), detections only
    crowd: np.ndarray | None = None  # (N,) bool, ground truth only
    areas: np.ndarray | None = None  # (N,), ground truth only

    @classmethod
    def of(cls, boxes: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[int] | np.ndarray,
           scores: Sequence[float] | np.ndarray | None = None, *,
           crowd: Sequence[bool] | np.ndarray | None = None,
           areas: Sequence[float] | np.ndarray | None = None) -> "ImageBoxes":
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
        s = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        c = None if crowd is None else np.asarray(crowd, dtype=bool).reshape(-1)
        a = None if areas is None else np.asarray(areas, dtype=np.float64).reshape(-1)
        if any(v is not None and len(v) != len(b) for v in (lab, s, c, a)):
            raise ValueError("boxes, labels, scores, crowd flags and areas must have the same length")
        return cls(b, lab, s, c, a)

    def xywh(self) -> np.ndarray:
        return np.concatenate([self.boxes[:, :2], self.boxes[:, 2:] - self.boxes[:, :2]], axis=1)

    def crowd_flags(self) -> np.ndarray:
        return self.crowd if self.crowd is not None else np.zeros(len(self.boxes), dtype=bool)

    def box_areas(self) -> np.ndarray:
        if self.areas is not None:
            return self.areas
        wh = self.xywh()
        return wh[:, 2] * wh[:, 3]


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


def coco_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO's box overlap (len(dt), len(gt)) of xywh boxes: IoU, or for a crowd ground truth the
    intersection over the detection's area. No overlap (width or height <= 0) is 0. The arithmetic
    follows pycocotools' order of operations, so the floats are the same."""
    dt = np.asarray(dt, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    w = np.minimum(dt[:, None, 2] + dt[:, None, 0], gt[None, :, 2] + gt[None, :, 0]) - np.maximum(dt[:, None, 0], gt[None, :, 0])
    h = np.minimum(dt[:, None, 3] + dt[:, None, 1], gt[None, :, 3] + gt[None, :, 1]) - np.maximum(dt[:, None, 1], gt[None, :, 1])
    inter = w * h
    da = (dt[:, 2] * dt[:, 3])[:, None]
    ga = (gt[:, 2] * gt[:, 3])[None, :]
    union = np.where(np.asarray(crowd, dtype=bool)[None, :], da, da + ga - inter)
    overlap = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


@dataclass
class _ImageEval:
    """One image and category under one area range: its kept detections (score order) and whether
    each is matched / ignored at each IoU threshold, and how many ground truths are not ignored."""

    scores: np.ndarray  # (D,)
    matched: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool
    n_gt: int


def _match(ious: np.ndarray, gt_ignore: np.ndarray, crowd: np.ndarray,
           thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's greedy matching. `ious` (D, G) has detections in score order and ground truths
    sorted with the ignored ones last. Returns (matched, matched-to-an-ignored-gt), both (T, D)."""
    n_t, (n_d, n_g) = len(thresholds), ious.shape
    matched = np.zeros((n_t, n_d), dtype=bool)
    on_ignored = np.zeros((n_t, n_d), dtype=bool)
    if n_d == 0 or n_g == 0:
        return matched, on_ignored
    best_any = ious.max(axis=1)
    rows = ious.tolist()
    ignore = gt_ignore.tolist()
    is_crowd = crowd.tolist()
    for ti, thr in enumerate(thresholds):
        taken = [False] * n_g
        for d in np.flatnonzero(best_any >= min(thr, 1 - 1e-10)).tolist():  # others cannot match
            row = rows[d]
            best, m = min(thr, 1 - 1e-10), -1
            for g in range(n_g):
                if taken[g] and not is_crowd[g]:
                    continue  # a real box is matched once; a crowd region absorbs any number
                if m > -1 and not ignore[m] and ignore[g]:
                    break  # matched a real box: ignored regions (sorted last) cannot take it
                if row[g] < best:
                    continue
                best, m = row[g], g  # ties go to the later box, as in COCOeval
            if m == -1:
                continue
            matched[ti, d] = True
            on_ignored[ti, d] = ignore[m]
            taken[m] = True
    return matched, on_ignored


def _evaluate_image(pred: ImageBoxes, gt: ImageBoxes, cls: int, thresholds: Sequence[float],
                    area_ranges: Sequence[tuple[float, float]], max_det: int) -> list[_ImageEval] | None:
    """COCOeval.evaluateImg for one image and category, for every area range (None: no boxes)."""
    g_keep = gt.labels == cls
    g_box, g_crowd, g_area = gt.xywh()[g_keep], gt.crowd_flags()[g_keep], gt.box_areas()[g_keep]
    d_keep = pred.labels == cls
    d_box = pred.xywh()[d_keep]
    d_score = pred.scores[d_keep] if pred.scores is not None else np.ones(len(d_box))
    if len(g_box) == 0 and len(d_box) == 0:
        return None
    order = np.argsort(-d_score, kind="mergesort")[:max_det]
    d_box, d_score = d_box[order], d_score[order]
    d_area = d_box[:, 2] * d_box[:, 3]
    ious = coco_iou(d_box, g_box, g_crowd)
    out = []
    for lo, hi in area_ranges:
        g_ignore = g_crowd | (g_area < lo) | (g_area > hi)
        g_order = np.argsort(g_ignore, kind="mergesort")
        matched, on_ignored = _match(ious[:, g_order], g_ignore[g_order], g_crowd[g_order], thresholds)
        outside = (d_area < lo) | (d_area > hi)
        ignored = on_ignored | (~matched & outside[None, :])
        out.append(_ImageEval(d_score, matched, ignored, int(np.count_nonzero(~g_ignore))))
    return out


def _precision_recall(evals: list[_ImageEval], max_det: int, n_t: int) -> tuple[np.ndarray, np.ndarray] | None:
    """COCOeval.accumulate for one category, area range and detection cap: precision (T, 101) and
    recall (T,); None when no ground truth counts."""
    n_gt = sum(e.n_gt for e in evals)
    if n_gt == 0:
        return None
    scores = np.concatenate([e.scores[:max_det] for e in evals])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([e.matched[:, :max_det] for e in evals], axis=1)[:, order]
    ignored = np.concatenate([e.ignored[:, :max_det] for e in evals], axis=1)[:, order]
    tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    precision = np.zeros((n_t, len(_RECALL_POINTS)))
    recall = np.zeros(n_t)
    if tp.shape[1] == 0:
        return precision, recall
    rc = tp / n_gt
    pr = tp / (tp + fp + np.spacing(1))
    # Envelope: precision at recall r is the best precision at any recall >= r.
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    for t in range(n_t):
        idx = np.searchsorted(rc[t], _RECALL_POINTS, side="left")
        inside = idx < len(pr[t])
        precision[t, inside] = pr[t, idx[inside]]
        recall[t] = rc[t, -1]
    return precision, recall


def average_precision(tp: np.ndarray, n_gt: int) -> float:
    """COCO 101-point interpolated AP of detections already sorted by score (tp: bool flags)."""
    if n_gt == 0:
        return float("nan")
    tp = np.asarray(tp, dtype=bool)
    e = _ImageEval(np.zeros(len(tp)), tp[None, :], np.zeros((1, len(tp)), dtype=bool), n_gt)
    result = _precision_recall([e], len(tp), 1)
    assert result is not None
    return float(result[0][0].mean())


@dataclass(frozen=True)
class DetectionScores:
    """COCO's box metrics. NaN where no category has ground truth in the range (COCO: -1)."""

    map50: float
    map50_95: float
    per_class_ap50: dict[int, float] = field(default_factory=dict)
    per_class_ap50_95: dict[int, float] = field(default_factory=dict)
    images: int = 0
    ground_truth: int = 0  # boxes that count (crowd regions do not)
    coco: dict[str, float] = field(default_factory=dict)  # STAT_NAMES -> value
    # Per class with ground truth: precision at the 101 recall points, IoU 0.5, 100 detections
    # (the curve AP@0.5 averages; the picture `dl detect eval --out` draws).
    pr50: dict[int, list[float]] = field(default_factory=dict)
    # Rows truth, columns prediction, indexed by label; index 0 is background (a missed object is
    # predicted background, a detection of nothing is true background). See detection_confusion.
    confusion: list[list[int]] = field(default_factory=list)


def _mean(values: np.ndarray) -> float:
    kept = values[values > -1]
    return float(kept.mean()) if kept.size else float("nan")


def mean_average_precision(preds: Sequence[ImageBoxes], gts: Sequence[ImageBoxes]) -> DetectionScores:
    """COCOeval's bbox evaluation of `preds` against `gts` (one ImageBoxes each per image, in the
    same order), over the categories that appear in the ground truth."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} images")
    classes = sorted({int(c) for g in gts for c in g.labels})
    thresholds = COCO_THRESHOLDS
    ranges = list(AREA_RANGES.values())
    n_t, n_r, n_k, n_a, n_m = len(thresholds), len(_RECALL_POINTS), len(classes), len(ranges), len(MAX_DETS)
    precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
    recall = -np.ones((n_t, n_k, n_a, n_m))
    ground_truth = 0
    for k, cls in enumerate(classes):
        per_image = [e for e in (_evaluate_image(p, g, cls, thresholds, ranges, MAX_DETS[-1])
                                 for p, g in zip(preds, gts)) if e is not None]
        for a in range(n_a):
            evals = [e[a] for e in per_image]
            if a == 0:
                ground_truth += sum(e.n_gt for e in evals)
            for m, max_det in enumerate(MAX_DETS):
                result = _precision_recall(evals, max_det, n_t) if evals else None
                if result is not None:
                    precision[:, :, k, a, m], recall[:, k, a, m] = result
    t50, t75 = thresholds.index(0.5), thresholds.index(0.75)
    all_, top = 0, n_m - 1

    def ap(a: int = all_, t: int | None = None) -> float:
        p = precision[:, :, :, a, top] if t is None else precision[t, :, :, a, top]
        return _mean(p)

    def ar(a: int = all_, m: int = top) -> float:
        return _mean(recall[:, :, a, m])

    coco = dict(zip(STAT_NAMES, (ap(), ap(t=t50), ap(t=t75), ap(1), ap(2), ap(3),
                                 ar(m=0), ar(m=1), ar(m=2), ar(1), ar(2), ar(3))))
    per50 = {cls: float(precision[t50, :, k, all_, top].mean()) for k, cls in enumerate(classes)
             if precision[t50, 0, k, all_, top] > -1}
    per_all = {cls: float(precision[:, :, k, all_, top].mean()) for k, cls in enumerate(classes)
               if precision[0, 0, k, all_, top] > -1}
    pr50 = {cls: precision[t50, :, k, all_, top].tolist() for k, cls in enumerate(classes)
            if precision[t50, 0, k, all_, top] > -1}
    return DetectionScores(coco["AP50"], coco["AP"], per50, per_all, len(gts), ground_truth, coco, pr50,
                           detection_confusion(preds, gts))


# Labels beyond this are refused by the confusion matrix (its size is the square of it).
MAX_LABEL = 1000


def detection_confusion(preds: Sequence[ImageBoxes], gts: Sequence[ImageBoxes], *, iou: float = 0.5,
                        score: float = 0.5) -> list[list[int]]:
    """A detection confusion matrix including background (as YOLO-style tools draw it): per image,
    detections scoring at least `score` are paired one-to-one with ground-truth boxes of any class
    at IoU >= `iou`, highest overlap first; a pair counts at [truth label, predicted label], an
    unpaired truth at [label, 0] (missed), an unpaired detection at [0, label] (nothing there).
    Crowd regions take no part. Size: the largest label + 1 (at most MAX_LABEL + 1)."""
    top = max([int(b.labels.max()) for b in list(preds) + list(gts) if len(b.labels)] + [0])
    if top > MAX_LABEL:
        raise ValueError(f"labels up to {MAX_LABEL} can be counted, got {top}")
    cm = np.zeros((top + 1, top + 1), dtype=np.int64)
    for p, g in zip(preds, gts):
        keep_g = ~g.crowd_flags()
        g_boxes, g_labels = g.boxes[keep_g], g.labels[keep_g]
        keep_p = (p.scores >= score) if p.scores is not None else np.ones(len(p.labels), dtype=bool)
        p_boxes, p_labels = p.boxes[keep_p], p.labels[keep_p]
        ious = box_iou(g_boxes, p_boxes)
        paired_g = np.zeros(len(g_labels), dtype=bool)
        paired_p = np.zeros(len(p_labels), dtype=bool)
        for flat in np.argsort(-ious, axis=None, kind="stable"):
            gi, pi = np.unravel_index(flat, ious.shape)
            if ious[gi, pi] < iou:
                break
            if paired_g[gi] or paired_p[pi]:
                continue
            paired_g[gi] = paired_p[pi] = True
            cm[g_labels[gi], p_labels[pi]] += 1
        np.add.at(cm, (g_labels[~paired_g], 0), 1)
        np.add.at(cm, (0, p_labels[~paired_p]), 1)
    return cm.tolist()


# --- the evaluator -------------------------------------------------------------------------------


Sample = tuple[Any, dict[str, Any]]
"""An image tensor (3, H, W) in [0, 1] and its target: boxes (xyxy), labels, and optionally
iscrowd (ignore regions) and area (COCO's `area` field), as `dlcli.data.coco` gives them."""


def target_boxes(target: dict[str, Any]) -> ImageBoxes:
    """The ground truth of one sample's target (tensors or arrays)."""

    def array(key: str) -> np.ndarray | None:
        value = target.get(key)
        if value is None:
            return None
        return value.numpy() if hasattr(value, "numpy") else np.asarray(value)

    return ImageBoxes.of(array("boxes"), array("labels"), crowd=array("iscrowd"), areas=array("area"))


def evaluate_detector(model: torch.nn.Module, samples: Iterable[Sample], runtime: Runtime,
                      *, batch_size: int = 8, reporter: Reporter | None = None, total: int | None = None) -> DetectionScores:
    """Run `model` over (image, target) samples and score it with COCO's rules (see the module)."""
    preds: list[ImageBoxes] = []
    gts: list[ImageBoxes] = []

    def flush(batch: list[Sample]) -> None:
        with runtime.inference():
            outs = model([runtime.to(x) for x, _ in batch])
        for (_, t), o in zip(batch, outs):
            preds.append(ImageBoxes.of(o["boxes"].double().cpu().numpy(), o["labels"].cpu().numpy(),
                                       o["scores"].double().cpu().numpy()))
            gts.append(target_boxes(t))

    over_batches(model, samples, batch_size, flush, reporter=reporter, total=total)
    return mean_average_precision(preds, gts)
