"""Detection: registry construction without downloads, the small Faster R-CNN, the trainer, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.data import scenes

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scene_batch(n: int, seed: int = 0):
    ds = scenes.SceneDataset(n, seed=seed, size=64)
    items = [ds[i] for i in range(n)]
    return [x for x, _ in items], [{"boxes": t["boxes"], "labels": t["labels"]} for _, t in items]


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init fasterrcnn_small file with our metadata, as `dl detect train` writes it."""
    from dlcli.training.detect import DetectTrainConfig, weights_meta
    from dlcli.models.detector_small import fasterrcnn_small
    from dlcli.weights.store import save_weights_file

    torch.manual_seed(0)
    cfg = DetectTrainConfig(classes=list(scenes.CLASS_NAMES))
    model = fasterrcnn_small(**cfg.model_config())
    path = tmp_path_factory.mktemp("det") / "small.safetensors"
    save_weights_file(path, model.state_dict(), weights_meta(cfg, {"val_map50": 0.0}, 0))
    return path


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(scenes.make_scene(scenes.TEST_SEED, 0).image).save(path)
    return path


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn_v2.coco", "fasterrcnn_resnet50_fpn.coco",
                                  "fasterrcnn_mobilenet_v3_large_fpn.coco"])
def test_torchvision_detectors_build_without_download_in_the_pretrained_layout(name: str, dl_home: Path) -> None:
    """Random init through the registry, no network, and the same tensors torchvision's own builder
    makes when it loads the COCO file (so the strict load of the real file will fit)."""
    import torchvision.models.detection as tvd
    from torchvision.models._api import WeightsEnum

    from dlcli.weights import loader, registry, store

    spec = registry.get(name)
    with mock.patch("urllib.request.urlopen", side_effect=AssertionError("network used")):
        loaded = loader.load_model(name, task="detect", random_init=True)
    assert loaded.labels is not None and loaded.labels[1] == "person"
    ours = {k: tuple(v.shape) for k, v in loaded.model.state_dict().items()}
    with mock.patch.object(WeightsEnum, "get_state_dict", lambda self, *a, **k: {}), \
            mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None):
        ref = getattr(tvd, spec.arch)(weights=store.torchvision_weights(spec.source))
    assert ours == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert not any((dl_home / "torch").rglob("*.pth"))


def test_default_is_resnet50_v2_and_offline_falls_back_to_bundled_or_says_so() -> None:
    from dlcli.errors import WeightsError
    from dlcli.progress import RecordingReporter
    from dlcli.device import Runtime
    from dlcli.tasks import detect
    from dlcli.weights import registry

    assert registry.default_for("detect").name == "fasterrcnn_resnet50_fpn_v2.coco"
    rec = RecordingReporter()
    if registry.lookup(detect.BUNDLED) is None:
        with pytest.raises(WeightsError):
            detect.load_detector(Runtime.create("cpu"), offline=True, reporter=rec)
    else:
        det = detect.load_detector(Runtime.create("cpu"), offline=True, reporter=rec)
        assert det.spec.name == detect.BUNDLED
        assert any("bundled" in m for m in rec.messages)


def test_small_detector_training_steps_lower_the_loss() -> None:
    from dlcli.models.detector_small import fasterrcnn_small

    torch.manual_seed(0)
    model = fasterrcnn_small(num_classes=5, width=8, out_channels=16, representation=32, image_size=64)
    images, targets = _scene_batch(2)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # same proposal sampling every time: the loss is comparable
        return sum(model(images, targets).values())

    before = float(loss().detach())
    for _ in range(2):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < before


def test_small_detector_boxes_are_in_original_pixels() -> None:
    from dlcli.models.detector_small import fasterrcnn_small

    model = fasterrcnn_small().eval()
    with torch.no_grad():
        out = model([torch.rand(3, 200, 300)])[0]
    if len(out["boxes"]):
        assert float(out["boxes"][:, 2].max()) <= 300 and float(out["boxes"][:, 3].max()) <= 200


def test_trainer_checkpoints_and_resumes(tmp_path: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.errors import InputError
    from dlcli.progress import RecordingReporter
    from dlcli.training.detect import DetectTrainConfig, train_detector
    from dlcli.weights.store import read_state_dict

    cfg = DetectTrainConfig(epochs=1, steps_per_epoch=1, batch_size=2, val_size=2, width=8, out_channels=16,
                            representation=32)
    rec = RecordingReporter()
    summary = train_detector(cfg, tmp_path / "run", Runtime.create("cpu"), reporter=rec)
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and summary.best.is_file()
    _, meta = read_state_dict(summary.best)
    assert meta["arch"] == "fasterrcnn_small" and meta["labels"] == list(scenes.CLASS_NAMES)
    with pytest.raises(InputError):  # a new run into an old folder is refused
        train_detector(cfg, tmp_path / "run", Runtime.create("cpu"))
    more = DetectTrainConfig(epochs=2)
    train_detector(more, tmp_path / "run", Runtime.create("cpu"), resume=True, reporter=rec)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["step"] == 2
    assert any("resuming" in m for m in rec.messages)


def test_cli_detect_json_files_crops_and_coco(small_weights: Path, scene_png: Path, tmp_path: Path) -> None:
    out, crops, coco = tmp_path / "out", tmp_path / "crops", tmp_path / "det.json"
    result = runner.invoke(app, ["detect", str(scene_png), "--weights-file", str(small_weights), "--threshold", "0",
                                 "--max-detections", "3", "--out", str(out), "--crops", str(crops),
                                 "--coco-json", str(coco), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"model", "threshold", "images", "failures", "seconds", "provenance"}
    item = data["images"][0]
    assert (item["width"], item["height"]) == (128, 128)
    assert 1 <= len(item["detections"]) <= 3
    for d in item["detections"]:
        assert set(d) == {"label", "label_id", "score", "box"}
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 <= x1 <= 128 and 0 <= y0 <= y1 <= 128
        assert d["label"] in scenes.CLASS_NAMES
    annotated = Path(item["files"]["annotated"])
    assert annotated.is_file() and Image.open(annotated).size == (128, 128)
    assert len(item["files"]["crops"]) == len(list(crops.iterdir()))
    rows = json.loads(coco.read_text())
    assert len(rows) == len(item["detections"])
    assert set(rows[0]) >= {"image_id", "category_id", "bbox", "score"}
    x0, y0, _, _ = item["detections"][0]["box"]
    assert rows[0]["bbox"][:2] == [x0, y0]


def test_cli_detect_errors(small_weights: Path, scene_png: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["detect", str(scene_png), "--weights-file", str(small_weights),
                                 "--classes", "circel"])
    assert result.exit_code == 2 and "circle" in result.output
    result = runner.invoke(app, ["detect", str(tmp_path / "missing.png"), "--weights-file", str(small_weights)])
    assert result.exit_code == 2
    result = runner.invoke(app, ["detect", "train"])
    assert result.exit_code == 2 and "--out" in result.output


def test_cli_detect_eval_json(small_weights: Path) -> None:
    result = runner.invoke(app, ["detect", "eval", "--weights-file", str(small_weights), "-n", "2", "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == 2 and 0.0 <= data["map50"] <= 1.0 and 0.0 <= data["map50_95"] <= data["map50"] + 1e-9
    assert set(data["per_class"]) <= set(scenes.SHAPES)


def test_fcn_backbone_starts_from_a_trained_fcn_encoder() -> None:
    from dlcli.models.detector_small import fasterrcnn_small
    from dlcli.models.fcn_small import FCNSmall

    fcn = FCNSmall(num_classes=5, width=8)
    det = fasterrcnn_small(width=8)
    assert det.backbone.load_fcn_encoder(fcn.state_dict()) > 0
    assert torch.equal(det.backbone.stage1[0].weight, fcn.stage1[0].weight)
    with pytest.raises(ValueError):  # another width does not fit
        fasterrcnn_small(width=16).backbone.load_fcn_encoder(fcn.state_dict())
    with pytest.raises(ValueError):
        fasterrcnn_small(backbone="resnet")


def test_grid_roi_align_matches_torchvision_roi_align() -> None:
    from torchvision.ops import roi_align

    from dlcli.models.detector_small import GridRoIAlign

    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 16)
    boxes = [torch.tensor([[8.0, 8.0, 72.0, 64.0], [20.0, 30.0, 100.0, 120.0]]), torch.tensor([[0.0, 0.0, 128.0, 128.0]])]
    for sampling in (1, 2):
        ours = GridRoIAlign(7, sampling)({"0": x}, boxes, [(128, 128), (128, 128)])
        ref = roi_align(x, boxes, 7, spatial_scale=1 / 8, sampling_ratio=sampling, aligned=True)
        assert ours.shape == (3, 4, 7, 7)
        assert torch.allclose(ours, ref, atol=1e-5)


def _coco_set(root: Path, n: int = 5) -> Path:
    """Scenes written as a COCO-format set: images/ + annotations.json (xywh boxes)."""
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        s = scenes.make_scene(4, i, size=64)
        Image.fromarray(s.image).save(root / "images" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 64})
        for box, label in zip(s.boxes.tolist(), s.labels.tolist()):
            x0, y0, x1, y1 = box
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 10 + label,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})
    cats = [{"id": 10 + k, "name": name} for k, name in enumerate(scenes.SHAPES, start=1)]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def test_train_and_eval_on_a_coco_format_set(tmp_path: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.tasks import detect
    from dlcli.training.detect import DetectTrainConfig, train_detector

    ann = _coco_set(tmp_path / "coco")
    cfg = DetectTrainConfig(data=str(ann), images=str(tmp_path / "coco" / "images"), epochs=1, batch_size=2,
                            width=8, out_channels=16, representation=32, image_size=64)
    summary = train_detector(cfg, tmp_path / "run", Runtime.create("cpu"))
    report = detect.evaluate(Runtime.create("cpu"), weights_file=summary.best, data=str(ann))  # finds images/
    assert report.images == 5 and report.ground_truth == sum(
        len(scenes.make_scene(4, i, size=64).objects) for i in range(5))
    assert 0.0 <= report.map50 <= 1.0


def test_bundled_detector_finds_the_sample_objects_offline() -> None:
    """`dl detect samples/scene.png --offline` works on a fresh machine with the bundled weights."""
    from dlcli.evaluation.detection import box_iou
    from dlcli.weights import registry

    if registry.lookup("fasterrcnn_small.scenes") is None:
        pytest.skip("weights/fasterrcnn_small.scenes.safetensors is not bundled in this checkout")
    sample = Path(__file__).resolve().parents[1] / "samples" / "scene.png"
    result = runner.invoke(app, ["detect", str(sample), "--offline", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "fasterrcnn_small.scenes"
    truth = scenes.make_scene(2, 5)  # samples/scene.png (samples/README.md)
    found = data["images"][0]["detections"]
    for box, label in zip(truth.boxes, truth.labels):
        hits = [d for d in found if d["label_id"] == int(label)
                and box_iou(box[None], [d["box"]])[0, 0] >= 0.5]
        assert hits, f"missed the {scenes.CLASS_NAMES[int(label)]} at {box.tolist()}"
