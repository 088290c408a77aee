"""Segmentation: the small FCN (bilinear init), torchvision models through the registry, trainer, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.data import scenes

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fcn_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dlcli.models.fcn_small import FCNSmall
    from dlcli.training.segment import SegmentTrainConfig, weights_meta
    from dlcli.weights.store import save_weights_file

    torch.manual_seed(0)
    cfg = SegmentTrainConfig(classes=list(scenes.CLASS_NAMES), width=8)
    path = tmp_path_factory.mktemp("seg") / "fcn.safetensors"
    save_weights_file(path, FCNSmall(**cfg.model_config()).state_dict(), weights_meta(cfg, {}, 0))
    return path


def test_transposed_convs_start_as_bilinear_interpolation() -> None:
    from dlcli.models.fcn_small import FCNSmall, bilinear_upsampler

    x = torch.randn(1, 3, 8, 8)
    for factor in (2, 4):
        up = bilinear_upsampler(3, factor)
        ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        y = up(x)
        assert y.shape == ref.shape
        m = factor  # away from the border (zero padding there) the two agree exactly
        assert torch.allclose(y[..., m:-m, m:-m], ref[..., m:-m, m:-m], atol=1e-5)
    model = FCNSmall(num_classes=5, width=8)
    for up in (model.up4, model.up3, model.up_out):
        assert isinstance(up, torch.nn.ConvTranspose2d)


@pytest.mark.parametrize("size", [(128, 128), (70, 100)])
def test_fcn_output_matches_input_size(size: tuple[int, int]) -> None:
    from dlcli.models.fcn_small import FCNSmall

    model = FCNSmall(num_classes=5, width=8).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, *size)).shape == (2, 5, *size)


def test_fcn_training_steps_lower_the_loss() -> None:
    from dlcli.models.fcn_small import FCNSmall

    torch.manual_seed(0)
    model = FCNSmall(num_classes=5, width=8)
    ds = scenes.SceneDataset(2, size=64)
    x = torch.stack([ds[i][0] for i in range(2)])
    y = torch.stack([ds[i][1]["semantic"] for i in range(2)])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    before = float(F.cross_entropy(model(x), y).detach())
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert float(F.cross_entropy(model(x), y).detach()) < before


@pytest.mark.parametrize("name", ["fcn_resnet50.coco_voc", "deeplabv3_resnet50.coco_voc",
                                  "lraspp_mobilenet_v3_large.coco_voc"])
def test_torchvision_segmenters_build_without_download_in_the_pretrained_layout(name: str) -> None:
    import torchvision.models.segmentation as tvs
    from torchvision.models._api import WeightsEnum

    from dlcli.weights import loader, registry, store

    spec = registry.get(name)
    with mock.patch("urllib.request.urlopen", side_effect=AssertionError("network used")):
        model = loader.build(spec)
        loaded = loader.load_model(name, task="segment", random_init=True)
    assert loaded.labels is not None and len(loaded.labels) == 21
    assert getattr(loaded.model, "aux_classifier", None) is None  # dropped after loading
    with mock.patch.object(WeightsEnum, "get_state_dict", lambda self, *a, **k: {}), \
            mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None):
        ref = getattr(tvs, spec.arch)(weights=store.torchvision_weights(spec.source))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in ref.state_dict().items()}


def test_segment_default_is_fcn_resnet50() -> None:
    from dlcli.weights import registry

    assert registry.default_for("segment").name == "fcn_resnet50.coco_voc"


def test_trainer_checkpoints_and_resumes(tmp_path: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.training.segment import SegmentTrainConfig, train_segmenter
    from dlcli.weights.store import read_state_dict

    cfg = SegmentTrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, val_size=2, width=8, image_size=64)
    summary = train_segmenter(cfg, tmp_path / "run", Runtime.create("cpu"))
    _, meta = read_state_dict(summary.best)
    assert meta["arch"] == "fcn_small" and meta["task"] == "segment" and "val_miou" in meta["metrics"]
    train_segmenter(SegmentTrainConfig(epochs=2), tmp_path / "run", Runtime.create("cpu"), resume=True)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["step"] == 4


def test_cli_segment_writes_masks_of_the_input_size(fcn_weights: Path, tmp_path: Path) -> None:
    img = tmp_path / "wide.png"
    Image.fromarray(scenes.make_scene(scenes.TEST_SEED, 1, size=96).image).resize((150, 90)).save(img)
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(img), "--weights-file", str(fcn_weights), "--out", str(out),
                                 "--opacity", "0.7", "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    item = data["images"][0]
    assert (item["width"], item["height"]) == (150, 90)
    assert sum(c["pixels"] for c in item["classes"]) == 150 * 90
    assert abs(sum(c["share"] for c in item["classes"]) - 1) < 1e-6
    mask = Image.open(item["files"]["mask"])
    assert mask.size == (150, 90) and mask.mode == "L"
    assert int(np.asarray(mask).max()) < len(scenes.CLASS_NAMES)
    for kind in ("color", "overlay"):
        assert Image.open(item["files"][kind]).size == (150, 90)
    again = runner.invoke(app, ["segment", str(img), "--weights-file", str(fcn_weights), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output  # outputs are not overwritten silently


def test_cli_segment_eval_json(fcn_weights: Path) -> None:
    result = runner.invoke(app, ["segment", "eval", "--weights-file", str(fcn_weights), "-n", "3", "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == 3 and 0.0 <= data["miou"] <= 1.0 and 0.0 <= data["pixel_accuracy"] <= 1.0
    assert set(data["per_class_iou"]) == set(scenes.CLASS_NAMES)


def test_mask_folder_training_data(tmp_path: Path) -> None:
    from dlcli.data.masks import MaskFolder

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(2):
        s = scenes.make_scene(0, i)
        Image.fromarray(s.image).save(tmp_path / "images" / f"{i}.png")
        Image.fromarray(s.semantic).save(tmp_path / "masks" / f"{i}.png")
    (tmp_path / "classes.txt").write_text("\n".join(scenes.CLASS_NAMES) + "\n")
    folder = MaskFolder(tmp_path, size=64)
    x, m = folder[0]
    assert x.shape == (3, 64, 64) and m.shape == (64, 64)
    assert folder.classes == list(scenes.CLASS_NAMES)


def test_train_and_eval_on_an_image_mask_folder(tmp_path: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.tasks import segment
    from dlcli.training.segment import SegmentTrainConfig, train_segmenter

    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i in range(3):
        s = scenes.make_scene(5, i, size=48)
        Image.fromarray(s.image).save(tmp_path / "data" / "images" / f"{i}.png")
        Image.fromarray(s.semantic).save(tmp_path / "data" / "masks" / f"{i}.png")
    cfg = SegmentTrainConfig(data=str(tmp_path / "data"), epochs=1, batch_size=2, width=8, image_size=32)
    summary = train_segmenter(cfg, tmp_path / "run", Runtime.create("cpu"))
    report = segment.evaluate(Runtime.create("cpu"), weights_file=summary.best, data=str(tmp_path / "data"))
    assert report.images == 3 and 0.0 <= report.miou <= 1.0  # scored at the masks' own 48x48 size


def test_bundled_fcn_segments_the_sample_offline() -> None:
    """`dl segment samples/scene.png --offline` works on a fresh machine with the bundled weights."""
    from dlcli.weights import registry

    if registry.lookup("fcn_small.scenes") is None:
        pytest.skip("weights/fcn_small.scenes.safetensors is not bundled in this checkout")
    sample = Path(__file__).resolve().parents[1] / "samples" / "scene.png"
    result = runner.invoke(app, ["segment", str(sample), "--offline", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "fcn_small.scenes"
    found = {c["label"] for c in data["images"][0]["classes"]}
    truth = {o.shape for o in scenes.make_scene(2, 5).objects}  # samples/scene.png (samples/README.md)
    assert truth <= found


def test_cli_train_names_the_weights_and_resume_continues(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--steps-per-epoch", "1", "-b", "2", "--val-size", "2", "--image-size", "32"]
    result = runner.invoke(app, ["segment", "train", "--out", str(run), "--epochs", "1", *args,
                                 "--name", "fcn_small.mine", "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["registered"] == "fcn_small.mine" and Path(data["best"]).is_file()
    img = tmp_path / "s.png"
    Image.fromarray(scenes.make_scene(0, 0, size=64).image).save(img)
    used = runner.invoke(app, ["segment", str(img), "--model", "fcn_small.mine", "--json", "-q"])
    assert used.exit_code == 0 and json.loads(used.stdout)["model"] == "fcn_small.mine"
    again = runner.invoke(app, ["segment", "train", "--out", str(run), *args])
    assert again.exit_code == 2 and "--resume" in again.output
    more = runner.invoke(app, ["segment", "train", "--resume", str(run), "--epochs", "2", "-q", "--json"])
    assert more.exit_code == 0, more.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
