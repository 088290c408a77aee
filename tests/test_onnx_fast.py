"""`dl classify --runtime onnx` / `--model-file` without torch: once the export is cached, a run
resolves the weights' SHA-256 in the registry, opens the cached .onnx, preprocesses with PIL and
numpy and never imports torch; its output is the torch run's (labels; probabilities to 1e-5)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli.cli.app import app

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "samples" / "digits"
SAMPLES = sorted(str(p) for p in (ROOT / "samples").glob("*.png"))
WIDTH = "120"  # one console width for the tables of both processes

# `python -m dlcli ARGS`, then one last stderr line saying whether torch was imported.
PROBE = ("import runpy, sys\n"
         "sys.argv = ['dl', *sys.argv[1:]]\n"
         "try:\n"
         "    runpy.run_module('dlcli', run_name='__main__')\n"
         "finally:\n"
         "    sys.stderr.write('\\nTORCH_IMPORTED=%s\\n' % ('torch' in sys.modules))\n")


def _dl(dl_home: Path, *args: str) -> tuple[subprocess.CompletedProcess, bool]:
    """Run the CLI in a fresh interpreter: (the process, whether it imported torch)."""
    env = dict(os.environ, DL_HOME=str(dl_home), TORCH_HOME=str(dl_home / "torch"), PYTHONPATH=str(ROOT),
               OMP_NUM_THREADS="1", COLUMNS=WIDTH)
    env.pop("DL_OFFLINE", None)
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)  # the exit code is checked by each caller
    flag = [ln for ln in done.stderr.splitlines() if ln.startswith("TORCH_IMPORTED=")]
    assert flag, done.stderr
    return done, flag[-1] == "TORCH_IMPORTED=True"


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": WIDTH})


def _same_report(torch_json: str, onnx_json: str) -> None:
    a, b = json.loads(torch_json), json.loads(onnx_json)
    assert len(a["images"]) == len(b["images"]) > 0
    for x, y in zip(a["images"], b["images"]):
        assert (x["index"], x["source"], x["warning"]) == (y["index"], y["source"], y["warning"])
        assert [p["label"] for p in x["predictions"]] == [p["label"] for p in y["predictions"]], (x, y)
        assert [p["rank"] for p in x["predictions"]] == [p["rank"] for p in y["predictions"]]
        for p, q in zip(x["predictions"], y["predictions"]):
            assert abs(p["probability"] - q["probability"]) <= 1e-5, (x["source"], p, q)
    assert a["failures"] == b["failures"]
    assert b["provenance"]["engine"].startswith("onnxruntime") and a["provenance"]["engine"] == "torch"
    pa = {k: v for k, v in a["provenance"].items() if k != "engine"}
    pb = {k: v for k, v in b["provenance"].items() if k != "engine"}
    assert pa == pb  # versions, device, dtype, seed, weights and their SHA-256


def _table(text: str) -> list[str]:
    """A classify table without its last line (which names the engine and the time)."""
    lines = text.rstrip("\n").splitlines()
    assert "image(s) in" in lines[-1]
    return lines[:-1]


def test_cached_export_runs_without_torch_like_torch(dl_home: Path, tmp_path: Path) -> None:
    args = ["classify", str(DIGITS), *SAMPLES, "--model", "deepconvnet.mnist", "-k", "3"]
    first, imported = _dl(dl_home, *args, "--runtime", "onnx", "--json")
    assert first.returncode == 0, first.stderr
    assert imported and "exporting deepconvnet.mnist to ONNX once" in first.stderr  # the miss exports, with torch
    fast, imported = _dl(dl_home, *args, "--runtime", "onnx", "--json")
    assert fast.returncode == 0, fast.stderr
    assert not imported and "exporting" not in fast.stderr
    ref = _invoke(*args, "--json")
    assert ref.exit_code == 0, ref.output
    _same_report(ref.stdout, fast.stdout)
    _same_report(ref.stdout, first.stdout)
    labels = [im["predictions"][0]["label"] for im in json.loads(fast.stdout)["images"][:7]]
    assert labels == ["0", "2", "3", "4", "5", "7", "9"]  # samples/digits/digit_<label>_*.png

    # The table, and the file of what the network saw, as the torch run renders them.
    table, imported = _dl(dl_home, *args, "--runtime", "onnx", "--show-preprocessed", str(tmp_path / "onnx.png"))
    assert table.returncode == 0 and table.stderr.count("Error:") == 0, table.stderr
    ref_table = _invoke(*args, "--show-preprocessed", str(tmp_path / "torch.png"))
    assert ref_table.exit_code == 0, ref_table.output
    assert _table(table.stdout) == _table(ref_table.stdout)
    assert "onnxruntime" in table.stdout.splitlines()[-1]
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(tmp_path / "onnx.png")), np.asarray(Image.open(tmp_path / "torch.png")))

    # --jsonl streams the same lines (the last one carries the provenance).
    lines, imported = _dl(dl_home, *args, "--runtime", "onnx", "--jsonl", "-q")
    assert lines.returncode == 0 and not imported, lines.stderr
    ref_lines = _invoke(*args, "--jsonl", "-q")
    got = [json.loads(ln) for ln in lines.stdout.splitlines()]
    want = [json.loads(ln) for ln in ref_lines.stdout.splitlines()]
    assert [g.get("source") for g in got] == [w.get("source") for w in want]
    assert [[p["label"] for p in g["predictions"]] for g in got[:-1]] == \
        [[p["label"] for p in w["predictions"]] for w in want[:-1]]


def test_model_file_runs_without_torch(dl_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "digits.onnx"
    assert _invoke("export", "deepconvnet.mnist", "--out", str(out), "-q").exit_code == 0
    args = ["classify", str(DIGITS), "-k", "2", "--json"]
    fast, imported = _dl(dl_home, *args, "--model-file", str(out))
    assert fast.returncode == 0 and not imported, fast.stderr
    ref = _invoke(*args, "--model", "deepconvnet.mnist")
    _same_report(ref.stdout, fast.stdout)
    # A bad input is still one `Error:` line and exit 7 (partial), without torch.
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    part, imported = _dl(dl_home, "classify", str(DIGITS), str(bad), "--model-file", str(out), "-q")
    assert part.returncode == 7 and not imported and part.stderr.count("Error:") == 1, part.stderr


def test_weights_file_through_the_cache(dl_home: Path, tmp_path: Path) -> None:
    """--weights-file: the file is hashed, and its cached export runs without torch."""
    from dlcli.weights import loader, registry, store

    spec = registry.get("deepconvnet.mnist")
    f = tmp_path / "mine.safetensors"
    model = loader.load_model("deepconvnet.mnist", task="classify").model
    store.save_weights_file(f, model.state_dict(), {"arch": "deepconvnet", "task": "classify", "name": "deepconvnet.mine",
                                                    "preprocess": "mnist", "labels": list(spec.labels or [])})
    args = ["classify", str(DIGITS), "--weights-file", str(f), "-k", "2", "--json"]
    first = _invoke(*args, "--runtime", "onnx")
    assert first.exit_code == 0 and "exporting deepconvnet.mine to ONNX once" in first.stderr, first.output
    assert (dl_home / "exported" / f"{store.sha256_file(f)}.onnx").is_file()
    fast, imported = _dl(dl_home, *args, "--runtime", "onnx")
    assert fast.returncode == 0 and not imported, fast.stderr
    _same_report(_invoke(*args).stdout, fast.stdout)
    assert json.loads(fast.stdout)["model"] == "deepconvnet.mine"
    # A changed file is other weights: another hash, so exported again rather than served stale.
    store.save_weights_file(f, {k: v * 0.5 for k, v in model.state_dict().items()},
                            {"arch": "deepconvnet", "task": "classify", "name": "deepconvnet.mine", "preprocess": "mnist"})
    again = _invoke(*args, "--runtime", "onnx")
    assert again.exit_code == 0 and "exporting deepconvnet.mine to ONNX once" in again.stderr


def test_cached_export_declines_what_it_cannot_serve(dl_home: Path) -> None:
    """None (so torch exports) for no export yet, a damaged file, or a file of other weights."""
    from dlcli.tasks.export import cache_path, cached_export
    from dlcli.weights import registry

    sha = registry.get("deepconvnet.mnist").source.sha256
    assert cached_export("classify", model="deepconvnet.mnist") is None
    cache_path(sha).parent.mkdir(parents=True)
    cache_path(sha).write_bytes(b"damaged")
    assert cached_export("classify", model="deepconvnet.mnist") is None
    assert _invoke("export", "dcgan.mnist", "--out", str(cache_path(sha)), "-q", "--force").exit_code == 0
    assert cached_export("classify", model="deepconvnet.mnist") is None  # the metadata names other weights


@pytest.mark.parametrize("name", ["deepconvnet.mnist", "resnet50.imagenet", "efficientnet_b0.imagenet",
                                  "fcn_small.scenes"])
def test_array_presets_equal_the_torch_presets(name: str) -> None:
    """PIL + numpy give the torch presets' arrays bit for bit (torchvision's bilinear and bicubic
    ImageClassification, the MNIST digit finder, tensor01) on every picture under samples/."""
    from dlcli import media
    from dlcli.errors import InputError
    from dlcli.tasks._arrays import array_transform
    from dlcli.tasks.export import _record, plan_for
    from dlcli.weights import loader, registry
    from dlcli.weights.presets import transform_for
    from dlcli.weights.spec import TorchvisionSource

    spec = registry.get(name)
    meta = {}
    if isinstance(spec.source, TorchvisionSource):  # what `dl export` records about torchvision's transform
        loaded = loader.load_model(name, task=spec.task, random_init=True)
        meta = {"transforms": _record(loaded, plan_for(loaded), "fp32")["transforms"]}
        assert meta["transforms"]["interpolation"] in ("bilinear", "bicubic")
    transform, mode = transform_for(spec)
    arrays = array_transform(spec, meta)
    assert arrays is not None
    files = [*SAMPLES, *sorted(str(p) for p in DIGITS.glob("*.png")), str(ROOT / "samples" / "style_ihc.jpg")]
    compared = 0
    for f in files:
        image = media.load_image(f, mode=mode)
        image = getattr(image, "image", image)
        try:
            want = transform(image).numpy()
        except InputError as exc:  # the digit finder refuses some photos; the numpy preset must refuse them too
            with pytest.raises(InputError, match=re.escape(exc.message)):
                arrays(image)
            continue
        got = arrays(image)
        assert got.dtype == np.float32 and np.array_equal(got, want), f
        compared += 1
    assert compared >= 10


def test_array_presets_decline_what_they_cannot_reproduce() -> None:
    """Presets that resize a tensor (torchvision v2), Caffe's, and exports made before the
    interpolation was recorded: None, so the torch preset runs."""
    from dlcli.tasks._arrays import array_transform
    from dlcli.weights import registry

    assert array_transform(registry.get("efficientnet_lite0.imagenet"), {}) is None
    old = {"transforms": {"resize_size": [232], "crop_size": [224], "mean": [0.5] * 3, "std": [0.5] * 3}}
    assert array_transform(registry.get("resnet50.imagenet"), old) is None


def test_provenance_names_versions_without_importing_them() -> None:
    import torch
    import torchvision

    from dlcli.results import package_version

    assert package_version("torch") == torch.__version__
    assert package_version("torchvision") == torchvision.__version__
    assert package_version("no_such_package_here") is None
    code = ("import sys; from dlcli.results import package_version as v; "
            "print(v('torch'), v('torchvision'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout.split()
    assert out == [torch.__version__, torchvision.__version__, "False"]
