"""dl classify train: transfer learning on a tiny synthetic ImageFolder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def _invoke(*args: str):
    from dlcli.cli.app import app

    return CliRunner().invoke(app, list(args))


def make_folder(root: Path, per_class: int = 12, size: int = 48, seed: int = 0) -> Path:
    """Three classes of noisy images of one dominant colour, of varied sizes and positions."""
    rng = random.Random(seed)
    for name, (r, g, b) in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            w, h = size + rng.randint(-8, 8), size + rng.randint(-8, 8)
            img = Image.new("RGB", (w, h), (128, 128, 128))
            px = img.load()
            x0, y0 = rng.randint(0, w // 3), rng.randint(0, h // 3)
            for y in range(h):
                for x in range(w):
                    inside = x0 <= x < x0 + 2 * w // 3 and y0 <= y < y0 + 2 * h // 3
                    base = (r, g, b) if inside else (128, 128, 128)
                    px[x, y] = tuple(max(0, min(255, c + rng.randint(-40, 40))) for c in base)
            img.save(root / name / f"{i}.png")
    return root


def test_head_replacement_covers_linear_and_conv_heads() -> None:
    import torchvision.models as tvm

    from dlcli.training.transfer import replace_head

    m = tvm.squeezenet1_0(weights=None)
    assert replace_head(m, 4) == "classifier.1" and m.classifier[1].out_channels == 4
    m = tvm.resnet18(weights=None)
    assert replace_head(m, 3) == "fc" and m.fc.out_features == 3
    m = tvm.mobilenet_v3_large(weights=None)
    assert replace_head(m, 2) == "classifier.3"


@pytest.fixture
def small(tiny, clean_registry):
    """tinynet.test's file, fed 32x32 crops (fast) instead of 224x224."""
    import dataclasses

    spec, _ = tiny
    return clean_registry.register(dataclasses.replace(spec, name="tinynet.small",
                                                       preprocess_args={"resize": 36, "crop": 32}))


def test_train_rises_above_chance_and_weights_file_classifies(small, tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    out = tmp_path / "run"
    res = _invoke("classify", "train", str(data), "--from", "tinynet.small", "--out", str(out), "--epochs", "6",
                  "--lr", "0.05", "--batch-size", "8", "--val-split", "0.25", "--seed", "0", "--json", "-q")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["classes"] == ["blue", "green", "red"]
    assert report["train_images"] == 27 and report["val_images"] == 9
    assert report["best_val_accuracy"] > 0.6  # chance is 1/3
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["epoch"] for r in train_rows] == [1, 2, 3, 4, 5, 6] and train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert [r["epoch"] for r in rows if r["split"] == "val"] == [1, 2, 3, 4, 5, 6]
    assert (out / "last.safetensors").is_file()
    assert json.loads((out / "run.json").read_text())["state"] == "finished"

    # the best weights work at once through dl classify --weights-file
    best = out / "best.safetensors"
    res = _invoke("classify", str(data / "red" / "0.png"), str(data / "blue" / "1.png"),
                  "--weights-file", str(best), "--json", "--top-k", "3")
    assert res.exit_code == 0, res.output
    images = json.loads(res.stdout)["images"]
    assert {p["label"] for p in images[0]["predictions"]} == set(COLOURS)

    # an existing run is not overwritten; --resume continues it to more epochs
    res = _invoke("classify", "train", str(data), "--from", "tinynet.small", "--out", str(out), "-q")
    assert res.exit_code == 2 and "--resume" in res.stderr
    # the run's own settings come back from its folder: only the epochs are given
    res = _invoke("classify", "train", str(data), "--epochs", "7", "--resume", str(out), "--json", "-q")
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["history"]) == 7 and json.loads(res.stdout)["val_images"] == 9


def test_freeze_backbone_trains_only_the_head(tiny, tmp_path: Path) -> None:
    import torch

    from dlcli.device import Runtime
    from dlcli.training import transfer
    from dlcli.weights import loader, store

    data = make_folder(tmp_path / "data", per_class=4, size=24)
    args = transfer.TransferArgs(data_dir=data, base="tinynet.test", epochs=1,
                                 batch_size=4, val_split=0.0, freeze_backbone=True, augment=False)
    report = transfer.train(args, lambda device: Runtime.create("cpu", seed=0), out=tmp_path / "run", device="cpu")
    before = loader.load_model("tinynet.test", task="classify").model.state_dict()
    after, meta = store.read_state_dict(Path(report.weights_file))
    assert torch.equal(after["0.weight"], before["0.weight"])  # the conv backbone is untouched
    assert after["4.weight"].shape == (3, 4) and meta["labels"] == ["blue", "green", "red"]


def test_bad_data_dirs(tiny, tmp_path: Path) -> None:
    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "one" / "only" / "a.png")
    res = _invoke("classify", "train", str(tmp_path / "one"), "--from", "tinynet.test", "--out", str(tmp_path / "r"))
    assert res.exit_code == 5 and "at least two" in res.stderr
    res = _invoke("classify", "train", str(tmp_path / "nope"), "--from", "tinynet.test", "--out", str(tmp_path / "r"))
    assert res.exit_code == 5


@pytest.mark.slow  # two torchrun processes start torch twice: ~25 s of CPU, up to a minute on a busy machine
def test_ddp_two_cpu_processes(tmp_path: Path, dl_home: Path) -> None:
    """torchrun with 2 gloo processes: each trains on its shard, rank 0 writes the weights."""
    import os
    import shutil
    import subprocess

    import torch
    import torchvision.models as tvm

    from dlcli.weights import loader

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    torch.manual_seed(0)
    raw = tmp_path / "sq.pth"
    torch.save(tvm.squeezenet1_0(weights=None, num_classes=1000).state_dict(), raw)
    loader.import_weights("squeezenet1_0.rand", raw, preprocess="imagenet",
                          preprocess_args={"resize": 64, "crop": 64}, labels=[str(i) for i in range(1000)])
    data = make_folder(tmp_path / "data", per_class=3, size=32)
    out = tmp_path / "run"
    env = {**os.environ, "DL_HOME": str(dl_home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["torchrun", "--nproc_per_node", "2", "--master_port", "29517", "-m", "dlcli", "classify", "train",
         str(data), "--from", "squeezenet1_0.rand", "--out", str(out), "--epochs", "1", "--batch-size", "2",
         "--val-split", "0", "--no-augment", "--device", "cpu", "--json", "-q"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)  # only rank 0 prints
    assert report["train_images"] == 9 and (out / "best.safetensors").is_file()


def test_ctrl_c_saves_a_checkpoint_that_resume_continues(small, tmp_path: Path, monkeypatch) -> None:
    from dlcli.data import imagefolder
    from dlcli.device import Runtime
    from dlcli.training import transfer
    from dlcli.training.checkpoint import Interrupted

    data = make_folder(tmp_path / "data", per_class=4, size=24)
    args = transfer.TransferArgs(data_dir=data, base="tinynet.small", epochs=2, batch_size=4, val_split=0.25,
                                 augment=False)
    real = imagefolder.ImageListDataset.__getitem__
    calls = {"n": 0}

    def interrupting(self, i):
        calls["n"] += 1
        if calls["n"] == 14:  # in the second epoch's training (9 training + 3 validation reads per epoch)
            raise KeyboardInterrupt
        return real(self, i)

    monkeypatch.setattr(imagefolder.ImageListDataset, "__getitem__", interrupting)
    with pytest.raises(Interrupted) as exc:
        transfer.train(args, lambda device: Runtime.create("cpu", seed=0), out=tmp_path / "run", device="cpu")
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and "--resume" in exc.value.message
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in rows] == ["train", "val"]  # epoch 1 was finished
    assert json.loads((tmp_path / "run" / "run.json").read_text())["state"] == "interrupted"
    monkeypatch.setattr(imagefolder.ImageListDataset, "__getitem__", real)
    report = transfer.train(args, lambda device: Runtime.create("cpu", seed=0), out=tmp_path / "run", resume=True,
                            device="cpu")
    assert [h["epoch"] for h in report.history] == [1, 2]
