"""`dl detect eval` on COCO-format data equals pycocotools' COCOeval (crowd regions, tiny boxes, more
than 100 detections per image, several categories and object sizes); the loader keeps what COCO keeps.

pycocotools is an optional test dependency (`pip install -e ".[coco]"`); without it the comparisons
skip with that reason. The library never imports it."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.evaluation.detection import STAT_NAMES, ImageBoxes, mean_average_precision

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The file's categories (ids not contiguous; "fish" is only ever a crowd region, "owl" never appears).
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "bird"},
              {"id": 9, "name": "fish"}, {"id": 12, "name": "owl"}]
SIZE = 240  # image side: room for small (< 32²), medium and large (> 96²) objects


def _cocoeval():
    pytest.importorskip("pycocotools", reason="pycocotools is not installed (pip install -e '.[coco]')")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


def _toy_set(rng: np.random.Generator, n_images: int = 6) -> dict[str, Any]:
    """Ground truth with crowd regions, boxes of a pixel or less (and of zero width), `area` fields
    that differ from the box's (as segmentation areas do), and objects of every size."""
    images, anns = [], []
    for i in range(n_images):
        image_id = 10 + 3 * i  # ids neither contiguous nor in file order
        images.append({"id": image_id, "file_name": f"im{image_id}.png", "width": SIZE, "height": SIZE})
        for _ in range(int(rng.integers(2, 9))):
            side = float(rng.choice([rng.uniform(4, 30), rng.uniform(33, 95), rng.uniform(97, 160)]))
            w, h = side * rng.uniform(0.7, 1.3), side * rng.uniform(0.7, 1.3)
            x, y = rng.uniform(0, SIZE - w / 2), rng.uniform(0, SIZE - h / 2)
            anns.append({"image_id": image_id, "category_id": int(rng.choice([1, 3, 7])),
                         "bbox": [x, y, w, h], "area": w * h * rng.uniform(0.55, 1.0), "iscrowd": 0})
        # a tiny box (<= 1 px) and a zero-width one: COCO keeps both (misses nobody can find)
        anns.append({"image_id": image_id, "category_id": 1, "bbox": [rng.uniform(0, 200), 50.0, 0.8, 0.9],
                     "area": 0.5, "iscrowd": 0})
        if i % 2 == 0:
            anns.append({"image_id": image_id, "category_id": 3, "bbox": [100.0, 100.0, 0.0, 7.0],
                         "area": 0.0, "iscrowd": 0})
        # crowd regions: a big one on dogs, and one of a category that has nothing else
        anns.append({"image_id": image_id, "category_id": 3, "bbox": [0.0, 120.0, 120.0, 110.0],
                     "area": 9000.0, "iscrowd": 1})
        if i % 3 == 0:
            anns.append({"image_id": image_id, "category_id": 9, "bbox": [130.0, 10.0, 90.0, 60.0],
                         "area": 4000.0, "iscrowd": 1})
    rng.shuffle(anns)
    for k, a in enumerate(anns):
        a["id"] = k + 1  # ids start at 1: COCOeval reads id 0 as "unmatched"
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


def _detections(rng: np.random.Generator, gt: dict[str, Any]) -> list[dict[str, Any]]:
    """Jittered copies of the ground truth, detections inside crowd regions, random boxes, and
    more than 100 detections of one image (130 dogs on the first; 70 cats + 70 birds on the second).
    Scores are rounded to 2 digits so that ties occur."""
    dets = []
    for a in gt["annotations"]:
        for _ in range(int(rng.integers(0, 3))):
            x, y, w, h = a["bbox"]
            j = rng.normal(0, 0.08, 4) * max(w, h, 2.0)
            cat = a["category_id"] if rng.random() > 0.15 else int(rng.choice([1, 3, 7, 9]))
            dets.append({"image_id": a["image_id"], "category_id": cat,
                         "bbox": [x + j[0], y + j[1], max(w + j[2], 0.5), max(h + j[3], 0.5)]})
    first, second = gt["images"][0]["id"], gt["images"][1]["id"]
    extra = [(first, 3, 130), (second, 1, 70), (second, 7, 70)] + [(im["id"], 9, 5) for im in gt["images"]]
    for image_id, cat, n in extra:
        for _ in range(n):
            w, h = rng.uniform(5, 120, 2)
            dets.append({"image_id": image_id, "category_id": cat,
                         "bbox": [rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h), w, h]})
    for d in dets:
        d["score"] = round(float(rng.uniform(0.01, 1.0)), 2)
    order = rng.permutation(len(dets))
    return [dets[i] for i in order]


def _reference(gt: dict[str, Any], dets: list[dict[str, Any]]) -> Any:
    """pycocotools' COCOeval (bbox) on the same data; its printing silenced."""
    COCO, COCOeval = _cocoeval()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(json.loads(json.dumps(dets)))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _assert_stats_equal(ours: dict[str, Any], ev: Any) -> None:
    for name, ref in zip(STAT_NAMES, ev.stats):
        mine = ours[name]
        if ref == -1:
            assert mine is None or math.isnan(mine), f"{name}: COCO has no ground truth here, we say {mine}"
        else:
            assert mine == pytest.approx(ref, abs=1e-9), f"{name}: {mine} != {ref}"


def _write_images(root: Path, gt: dict[str, Any]) -> None:
    """One PNG per image; its top-left pixel carries the image's position, which the fake detector reads."""
    for pos, im in enumerate(sorted(gt["images"], key=lambda im: im["id"])):
        pixels = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
        pixels[0, 0] = pos
        Image.fromarray(pixels).save(root / im["file_name"])


class _FakeDetector(torch.nn.Module):
    """Answers each image with fixed detections (float64 xyxy, in the results' order)."""

    def __init__(self, per_image: list[dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.per_image = per_image

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self.per_image[int(round(float(x[0, 0, 0]) * 255))] for x in images]


def test_cli_detect_eval_on_a_coco_set_equals_cocoeval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.tasks import detect as task
    from dlcli.weights.spec import WeightsSpec

    rng = np.random.default_rng(0)
    gt = _toy_set(rng)
    dets = _detections(rng, gt)
    assert max(sum(d["image_id"] == im["id"] for d in dets) for im in gt["images"]) > 100
    assert any(a["iscrowd"] for a in gt["annotations"]) and min(a["bbox"][2] for a in gt["annotations"]) <= 1

    (tmp_path / "images").mkdir()
    _write_images(tmp_path / "images", gt)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(gt))
    # The model's own label order differs from the file's: evaluation maps them by name.
    labels = ["background", "owl", "bird", "fish", "cat", "dog"]
    cat_name = {c["id"]: c["name"] for c in CATEGORIES}
    per_image = []
    for im in sorted(gt["images"], key=lambda im: im["id"]):
        mine = [d for d in dets if d["image_id"] == im["id"]]
        per_image.append({
            "boxes": torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)],
                                  dtype=torch.float64).reshape(-1, 4),
            "labels": torch.tensor([labels.index(cat_name[d["category_id"]]) for d in mine], dtype=torch.int64),
            "scores": torch.tensor([d["score"] for d in mine], dtype=torch.float64),
        })
    # pycocotools sees the boxes as we hand them to the evaluator: xywh from our xyxy.
    for d in dets:
        x, y, w, h = d["bbox"]
        d["bbox"] = [x, y, (x + w) - x, (y + h) - y]
    ev = _reference(gt, dets)

    class Loaded:
        sha256 = "0" * 64

    class Fake:
        model = _FakeDetector(per_image)
        spec = WeightsSpec(name="fake.toy", arch="fake", task="detect", source=None)
        loaded = Loaded()

        def __init__(self) -> None:
            self.labels = labels

        def label(self, i: int) -> str:
            return labels[i]

    monkeypatch.setattr(task, "load_detector", lambda *a, **k: Fake())
    result = runner.invoke(app, ["detect", "eval", "--data", str(ann), "--json", "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    _assert_stats_equal(data["coco"], ev)
    assert data["map50_95"] == pytest.approx(ev.stats[0], abs=1e-9)
    assert data["map50"] == pytest.approx(ev.stats[1], abs=1e-9)
    # Per category (COCOeval's precision array, area "all", 100 detections); fish (crowd only) and
    # owl (no annotation) have no AP, as in COCO.
    precision = ev.eval["precision"]
    for k, cat in enumerate(ev.params.catIds):
        name = cat_name[cat]
        p = precision[:, :, k, 0, 2]
        if (p > -1).any():
            assert data["per_class"][name]["ap50_95"] == pytest.approx(p.mean(), abs=1e-9)
            assert data["per_class"][name]["ap50"] == pytest.approx(p[0].mean(), abs=1e-9)
        else:
            assert name not in data["per_class"]
    assert set(data["per_class"]) == {"cat", "dog", "bird"}
    assert data["ground_truth"] == sum(not a["iscrowd"] for a in gt["annotations"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_evaluator_equals_cocoeval_on_random_sets(seed: int) -> None:
    """The NumPy evaluator alone, on several random sets (unrounded floats everywhere)."""
    rng = np.random.default_rng(seed)
    gt = _toy_set(rng, n_images=5)
    dets = _detections(rng, gt)
    for d in dets:
        d["score"] = float(rng.uniform(0, 1)) if rng.random() < 0.7 else d["score"]
    ev = _reference(gt, dets)
    labels = {c["id"]: k + 1 for k, c in enumerate(CATEGORIES)}
    preds, gts = [], []
    for im in sorted(gt["images"], key=lambda im: im["id"]):
        a = [a for a in gt["annotations"] if a["image_id"] == im["id"]]
        d = [d for d in dets if d["image_id"] == im["id"]]
        xyxy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731
        gts.append(ImageBoxes.of([xyxy(x["bbox"]) for x in a], [labels[x["category_id"]] for x in a],
                                 crowd=[x["iscrowd"] for x in a], areas=[x["area"] for x in a]))
        preds.append(ImageBoxes.of([xyxy(x["bbox"]) for x in d], [labels[x["category_id"]] for x in d],
                                   [x["score"] for x in d]))
    _assert_stats_equal(mean_average_precision(preds, gts).coco, ev)


def test_crowd_region_absorbs_detections_and_tiny_boxes_count() -> None:
    """By hand: a detection inside a crowd region (intersection over its own area >= 0.5) is neither
    a hit nor a false alarm; a 1-px ground truth nobody finds costs recall."""
    crowd = [0, 0, 100, 100]
    gts = [ImageBoxes.of([[10, 10, 30, 30], crowd], [1, 1], crowd=[False, True])]
    # Ranked: inside the crowd region (ignored), the real object, a false alarm.
    preds = [ImageBoxes.of([[50, 50, 60, 60], [10, 10, 30, 30], [200, 200, 210, 210]], [1, 1, 1], [0.9, 0.8, 0.7])]
    s = mean_average_precision(preds, gts)
    assert s.map50 == pytest.approx(1.0) and s.ground_truth == 1
    tiny = [ImageBoxes.of([[10, 10, 30, 30], [5, 5, 6, 5.5]], [1, 1])]
    s = mean_average_precision([ImageBoxes.of([[10, 10, 30, 30]], [1], [0.9])], tiny)
    assert s.ground_truth == 2 and s.coco["AR100"] == pytest.approx(0.5)


def test_max_dets_keeps_the_100_best_per_image_and_class() -> None:
    """101 detections: the hit ranked last is cut at maxDets=100; at 1 detection AR is the top one's."""
    gt = [ImageBoxes.of([[0, 0, 10, 10]], [1])]
    boxes = [[50 + i, 50, 60 + i, 60] for i in range(100)] + [[0, 0, 10, 10]]
    scores = [0.9 - i * 0.001 for i in range(100)] + [0.1]
    s = mean_average_precision([ImageBoxes.of(boxes, [1] * 101, scores)], gt)
    assert s.map50 == 0.0 and s.coco["AR100"] == 0.0
    s = mean_average_precision([ImageBoxes.of(boxes[1:], [1] * 100, scores[1:])], gt)
    assert s.coco["AR100"] == pytest.approx(1.0) and s.coco["AR1"] == 0.0


def test_coco_loader_keeps_crowd_regions_tiny_boxes_and_areas(tmp_path: Path) -> None:
    from dlcli.data.coco import CocoDetection, trainable

    gt = _toy_set(np.random.default_rng(4), n_images=2)
    _write_images(tmp_path, gt)
    (tmp_path / "ann.json").write_text(json.dumps(gt))
    coco = CocoDetection(tmp_path / "ann.json")
    first = min(im["id"] for im in gt["images"])
    anns = [a for a in gt["annotations"] if a["image_id"] == first]
    _, t = coco[0]
    assert len(t["boxes"]) == len(anns)  # nothing dropped
    assert t["iscrowd"].tolist() == [bool(a["iscrowd"]) for a in anns]
    assert t["area"].tolist() == [a["area"] for a in anns]
    assert t["boxes"].dtype == torch.float64
    kept = trainable(t)  # training: no crowd regions, no box of a pixel or less
    assert len(kept["boxes"]) == sum(not a["iscrowd"] and a["bbox"][2] > 1 and a["bbox"][3] > 1 for a in anns)
    assert kept["boxes"].dtype == torch.float32


def test_scene_figures_equal_cocoeval() -> None:
    """The bundled scene detector on 12 held-out scenes: our figures are COCOeval's."""
    from dlcli.data import scenes
    from dlcli.device import Runtime
    from dlcli.tasks import detect as task
    from dlcli.weights import registry

    if registry.lookup("fasterrcnn_small.scenes") is None:
        pytest.skip("weights/fasterrcnn_small.scenes.safetensors is not bundled in this checkout")
    det = task.load_detector(Runtime.create("cpu"), model="fasterrcnn_small.scenes", offline=True)
    gt: dict[str, Any] = {"images": [], "annotations": [], "categories": [
        {"id": k, "name": n} for k, n in enumerate(scenes.CLASS_NAMES) if k]}
    dets: list[dict[str, Any]] = []
    preds, gts = [], []
    for i in range(12):
        s = scenes.make_scene(scenes.TEST_SEED, i)
        out = det.forward([det.transform(Image.fromarray(s.image))])[0]
        gt["images"].append({"id": i + 1, "file_name": f"{i}.png"})
        for box, label in zip(s.boxes.tolist(), s.labels.tolist()):
            x0, y0, x1, y1 = box
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": int(label),
                                      "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        boxes = out["boxes"].double().numpy()
        for box, label, score in zip(boxes.tolist(), out["labels"].tolist(), out["scores"].double().tolist()):
            dets.append({"image_id": i + 1, "category_id": int(label), "score": score,
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
        preds.append(ImageBoxes.of(boxes, out["labels"].numpy(), out["scores"].double().numpy()))
        gts.append(ImageBoxes.of(s.boxes, s.labels))
    ev = _reference(gt, dets)
    _assert_stats_equal(mean_average_precision(preds, gts).coco, ev)
