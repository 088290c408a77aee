"""Models that say what they know: the domain check (dlcli/domain.py) on held-out scenes, MNIST and
the sample photos, the weights that declare a domain, and the notice in the commands' output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import shared_data
from dlcli import domain
from dlcli.cli.app import app
from dlcli.data import scenes

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "style_hubble.jpg", "style_ihc.jpg"]
runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load(path: Path, mode: str) -> Image.Image:
    from dlcli.media import load_image

    return load_image(str(path), mode=mode)


def test_palette_is_the_scene_worlds() -> None:
    assert domain.SCENE_PALETTE.tolist() == [list(c) for c in scenes.COLORS.values()]


def test_no_false_alarm_on_500_held_out_scenes() -> None:
    scene = domain.DOMAINS["scenes"]
    misfits = [i for i in range(500)
               if not domain.check(scene, Image.fromarray(scenes.make_scene(scenes.TEST_SEED, i).image)).fits]
    assert misfits == []


def test_no_false_alarm_on_the_mnist_test_set() -> None:
    from dlcli.data.mnist import load_mnist

    x, _ = load_mnist(shared_data("MNIST", "raw"), "test")
    digits = domain.DOMAINS["digits"]
    misfits = [i for i, a in enumerate(x.numpy()) if not domain.check(digits, Image.fromarray(a)).fits]
    assert misfits == []


def test_drawn_sample_digits_fit_and_every_sample_photo_warns() -> None:
    for path in sorted((SAMPLES / "digits").glob("*.png")):
        assert domain.check(domain.DOMAINS["digits"], _load(path, "L")).fits, path.name
    for name in PHOTOS:
        assert not domain.check(domain.DOMAINS["scenes"], _load(SAMPLES / name, "RGB")).fits, name
        assert not domain.check(domain.DOMAINS["digits"], _load(SAMPLES / name, "L")).fits, name


def test_edge_cases_are_measured_not_crashed() -> None:
    grey = Image.new("RGB", (64, 64), (120, 120, 120))  # plain: no object of the palette, no ink
    assert not domain.check(domain.DOMAINS["scenes"], grey).fits
    assert not domain.check(domain.DOMAINS["digits"], grey.convert("L")).fits
    drawn = np.full((64, 64, 3), 128, dtype=np.uint8)
    drawn[20:40, 20:40] = (215, 40, 40)  # a red square on grey is the scene world
    assert domain.check(domain.DOMAINS["scenes"], Image.fromarray(drawn)).fits
    big = Image.open(SAMPLES / "chelsea.png").convert("RGB").resize((2400, 1600))  # subsampled, not refused
    assert not domain.check(domain.DOMAINS["scenes"], big).fits


def test_bundled_weights_declare_their_domain() -> None:
    from dlcli.weights import registry

    expected = {"fasterrcnn_small.scenes": "scenes", "fcn_small.scenes": "scenes", "nic.scenes": "scenes",
                "deepconvnet.mnist": "digits"}
    for name, dom in expected.items():
        spec = registry.lookup(name)
        if spec is None:
            pytest.skip(f"{name} is not bundled in this checkout")
        assert spec.extra.get("domain") == dom
        assert domain.domain_of(spec) is domain.DOMAINS[dom]
    assert domain.domain_of(registry.get("resnet50.imagenet")) is None


def test_scene_trainers_record_the_domain() -> None:
    from dlcli.training.detect import DetectTrainConfig, weights_meta

    assert weights_meta(DetectTrainConfig(classes=list(scenes.CLASS_NAMES)), {}, 0)["extra"]["domain"] == "scenes"
    assert "domain" not in weights_meta(DetectTrainConfig(data="coco.json", classes=["background", "a"]), {}, 0)["extra"]


@pytest.mark.parametrize("command", ["caption", "segment", "detect"])
def test_scene_models_warn_once_on_photos_and_not_on_scenes(command: str) -> None:
    from dlcli.weights import registry

    bundled = {"caption": "nic.scenes", "segment": "fcn_small.scenes", "detect": "fasterrcnn_small.scenes"}[command]
    if registry.lookup(bundled) is None:
        pytest.skip(f"{bundled} is not bundled in this checkout")
    inputs = [SAMPLES / "chelsea.png", SAMPLES / "scene.png", SAMPLES / "coffee.png"]
    res = runner.invoke(app, [command, *map(str, inputs), "--model", bundled, "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    warnings = [item["warning"] for item in json.loads(res.stdout)["images"]]
    assert warnings[1] is None and warnings[0] == warnings[2]
    assert warnings[0].startswith(f"{bundled} knows only the synthetic scene world")
    assert res.stderr.count(" knows only ") == 1  # one notice for the run, not one per photo
    res = runner.invoke(app, [command, *map(str, sorted(SAMPLES.glob("scene*.png"))), "--model", bundled,
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "knows only" not in res.stderr


def test_segment_notice_names_the_photo_model() -> None:
    from dlcli.weights import registry

    if registry.lookup("fcn_small.scenes") is None:
        pytest.skip("fcn_small.scenes is not bundled in this checkout")
    res = runner.invoke(app, ["segment", str(SAMPLES / "chelsea.png"), "--offline", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert ("fcn_small.scenes knows only the synthetic scene world (flat shapes on a plain background); "
            "for photos use --model deeplabv3_resnet50.coco_voc (needs a download)") in " ".join(res.stderr.split())


def test_digit_classifier_warns_on_a_photo_in_json() -> None:
    from dlcli.weights import registry

    if registry.lookup("deepconvnet.mnist") is None:
        pytest.skip("deepconvnet.mnist is not bundled in this checkout")
    res = runner.invoke(app, ["classify", str(SAMPLES / "chelsea.png"), str(SAMPLES / "digits" / "digit_7_pen-strokes.png"),
                              "--model", "deepconvnet.mnist", "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    photo, digit = json.loads(res.stdout)["images"]
    assert photo["warning"].startswith("deepconvnet.mnist knows only single handwritten digits")
    assert "efficientnet_lite2.imagenet" in photo["warning"]
    assert digit["warning"] is None and digit["predictions"][0]["label"] == "7"
