"""mAP (COCO-style matching, 101-point AP) and mIoU against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcli.evaluation.detection import (
    COCO_THRESHOLDS,
    ImageBoxes,
    average_precision,
    box_iou,
    mean_average_precision,
)
from dlcli.evaluation.segmentation import ConfusionMatrix

GT = [0, 0, 10, 10]


def test_box_iou_by_hand() -> None:
    iou = box_iou(np.array([GT]), np.array([[0, 0, 10, 5], [5, 0, 15, 10], [20, 20, 30, 30], GT]))
    assert iou[0].tolist() == pytest.approx([0.5, 50 / 150, 0.0, 1.0])


def test_thresholds_are_coco_ten() -> None:
    assert COCO_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_perfect_detection_is_one() -> None:
    s = mean_average_precision([ImageBoxes.of([GT], [1], [0.9])], [ImageBoxes.of([GT], [1])])
    assert s.map50 == 1.0 and s.map50_95 == 1.0


def test_false_positive_ranked_first_halves_ap() -> None:
    # Ranks: FP (0.9), TP (0.8) -> at recall 1 the precision is 1/2, so every recall point reads 0.5.
    preds = [ImageBoxes.of([[20, 20, 30, 30], GT], [1, 1], [0.9, 0.8])]
    assert mean_average_precision(preds, [ImageBoxes.of([GT], [1])]).map50 == pytest.approx(0.5)


def test_false_positive_ranked_last_costs_nothing() -> None:
    preds = [ImageBoxes.of([GT, [20, 20, 30, 30]], [1, 1], [0.9, 0.8])]
    assert mean_average_precision(preds, [ImageBoxes.of([GT], [1])]).map50 == pytest.approx(1.0)


def test_two_objects_tp_fp_tp_by_hand() -> None:
    # Two GT boxes over two images. Ranked: TP 0.9, FP 0.8, TP 0.7.
    # precision 1, 1/2, 2/3; recall 1/2, 1/2, 1; envelope 1, 2/3, 2/3.
    # Recall points 0.00..0.50 (51 of them) read 1, 0.51..1.00 (50) read 2/3.
    gts = [ImageBoxes.of([GT], [1]), ImageBoxes.of([[50, 50, 70, 70]], [1])]
    preds = [ImageBoxes.of([GT, [30, 30, 40, 40]], [1, 1], [0.9, 0.8]), ImageBoxes.of([[50, 50, 70, 70]], [1], [0.7])]
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    assert mean_average_precision(preds, gts).map50 == pytest.approx(expected)


def test_duplicate_detection_is_a_false_positive_after_the_match() -> None:
    # The duplicate (0.8) is a FP ranked after full recall: AP stays 1, as in COCO.
    assert average_precision(np.array([True, False]), 1) == 1.0
    preds = [ImageBoxes.of([GT, GT], [1, 1], [0.9, 0.8])]
    assert mean_average_precision(preds, [ImageBoxes.of([GT], [1])]).map50 == 1.0
    # Half of the ground truth found, with a FP first: precision 1/2 up to recall 1/2, then nothing.
    gts = [ImageBoxes.of([GT, [50, 50, 60, 60]], [1, 1])]
    preds = [ImageBoxes.of([[20, 20, 30, 30], GT], [1, 1], [0.9, 0.8])]
    assert mean_average_precision(preds, gts).map50 == pytest.approx(51 * 0.5 / 101)


def test_iou_range_counts_thresholds_met() -> None:
    # IoU 0.62: a hit at 0.50, 0.55, 0.60 and a miss at the seven stricter thresholds.
    preds = [ImageBoxes.of([[0, 0, 10, 6.2]], [1], [0.9])]
    s = mean_average_precision(preds, [ImageBoxes.of([GT], [1])])
    assert s.map50 == 1.0
    assert s.map50_95 == pytest.approx(0.3)


def test_wrong_class_and_missed_class() -> None:
    gts = [ImageBoxes.of([GT, [50, 50, 60, 60]], [1, 2])]
    # Class 1 found; class 2 labelled as class 3 (a class with no ground truth: left out of the mean).
    preds = [ImageBoxes.of([GT, [50, 50, 60, 60]], [1, 3], [0.9, 0.9])]
    s = mean_average_precision(preds, gts)
    assert s.per_class_ap50 == {1: 1.0, 2: 0.0}
    assert s.map50 == pytest.approx(0.5)
    assert s.ground_truth == 2


def test_each_gt_matches_the_best_unmatched_box() -> None:
    # Two overlapping GTs; the top detection matches the one it overlaps most, the second the other.
    gts = [ImageBoxes.of([[0, 0, 10, 10], [4, 0, 14, 10]], [1, 1])]
    preds = [ImageBoxes.of([[4, 0, 14, 10], [0, 0, 10, 10]], [1, 1], [0.9, 0.8])]
    assert mean_average_precision(preds, gts).map50 == 1.0


def test_no_ground_truth_gives_nan() -> None:
    s = mean_average_precision([ImageBoxes.of([GT], [1], [0.5])], [ImageBoxes.of([], [])])
    assert math.isnan(s.map50)


def test_confusion_matrix_by_hand() -> None:
    cm = ConfusionMatrix(3)
    truth = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 1], [1, 1]])
    cm.update(truth, pred)
    iou = cm.iou()
    # class 0: tp 1, union 2 -> 1/2; class 1: tp 2, union 3 -> 2/3; class 2: absent everywhere -> NaN.
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(2 / 3) and math.isnan(iou[2])
    assert cm.mean_iou() == pytest.approx((0.5 + 2 / 3) / 2)
    assert cm.pixel_accuracy() == pytest.approx(0.75)


def test_confusion_matrix_ignores_255_and_checks_shapes() -> None:
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 255, 1]), np.array([0, 1, 1]))
    assert cm.pixel_accuracy() == 1.0
    with pytest.raises(ValueError):
        cm.update(np.zeros((2, 2)), np.zeros((3, 3)))
