"""Segmentation metrics (a pixel confusion matrix: per-class IoU, mIoU, pixel accuracy) and the
evaluator that runs a segmenter over held-out (image, mask) samples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from dlcli.data.masks import IGNORE_INDEX
from dlcli.evaluation.batching import over_batches
from dlcli.progress import Reporter

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime


Sample = tuple[Any, Any]  # image (3, H, W) in [0, 1]; mask (H, W) int64


class ConfusionMatrix:
    """Accumulates a (num_classes x num_classes) pixel confusion matrix: rows truth, columns prediction."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, truth: np.ndarray, pred: np.ndarray) -> None:
        t = np.asarray(truth).reshape(-1).astype(np.int64)
        p = np.asarray(pred).reshape(-1).astype(np.int64)
        if t.shape != p.shape:
            raise ValueError(f"mask shapes differ: {np.shape(truth)} vs {np.shape(pred)}")
        keep = (t >= 0) & (t < self.num_classes)
        if self.ignore_index is not None:
            keep &= t != self.ignore_index
        p = np.clip(p[keep], 0, self.num_classes - 1)
        self.matrix += np.bincount(t[keep] * self.num_classes + p, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes)

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)

    def mean_iou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.diag(self.matrix).sum() / total) if total else float("nan")


def logits_of(output: Any) -> Any:
    """torchvision segmentation models return {"out": …}; ours returns the tensor."""
    return output["out"] if isinstance(output, dict) else output


def evaluate_segmenter(model: Any, samples: Iterable[Sample], runtime: Runtime,
                       num_classes: int, *, batch_size: int = 16, reporter: Reporter | None = None,
                       total: int | None = None) -> Any:
    """Confusion matrix of `model` over (image, mask) samples (mIoU, pixel accuracy)."""
    import torch
    import torch.nn.functional as F

    cm = ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)

    def flush(batch: list[Sample]) -> None:
        # Same-size images are stacked; mixed sizes run one by one.
        groups: dict[tuple[int, int], list[Sample]] = {}
        for x, m in batch:
            groups.setdefault(tuple(x.shape[-2:]), []).append((x, m))
        for items in groups.values():
            with runtime.inference():
                logits = logits_of(model(runtime.to(torch.stack([x for x, _ in items]))))
            logits = logits.float()
            for (_, m), lg in zip(items, logits):
                if tuple(lg.shape[-2:]) != tuple(m.shape[-2:]):
                    # Presets that resize (torchvision's): score at the mask's own resolution.
                    lg = F.interpolate(lg[None], size=tuple(m.shape[-2:]), mode="bilinear", align_corners=False)[0]
                cm.update(m.numpy(), lg.argmax(0).cpu().numpy())

    over_batches(model, samples, batch_size, flush, reporter=reporter, total=total)
    return cm
