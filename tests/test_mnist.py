"""MNIST: IDX parsing, data discovery, the DeepConvNet, the trainer (loss falls, resume, DDP)
and `dl train-mnist`. Synthetic IDX files keep these fast; real-data runs are marked slow."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlcli.data import mnist as data
from dlcli.errors import DataError, InputError

ROOT = Path(__file__).resolve().parents[1]


# --- helpers ------------------------------------------------------------------------------------


def idx_bytes(arr: torch.Tensor, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.to(torch.uint8).numpy().tobytes()


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable fake digits: class k is a bright 6x6 block at one of 10 places, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 40, (n, 28, 28), generator=g).to(torch.uint8)
    for i, k in enumerate(labels.tolist()):
        r, c = 3 + (k // 5) * 12, 2 + (k % 5) * 5
        images[i, r : r + 6, c : c + 6] = 255
    return images, labels


def write_mnist(folder: Path, n_train: int = 200, n_test: int = 100, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = synthetic_digits(n, seed)
        for kind, arr, magic in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801)):
            raw = idx_bytes(arr, magic)
            name = f"{split}-{kind}-ubyte"
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
    return folder


@pytest.fixture
def fake_mnist(tmp_path: Path) -> Path:
    return write_mnist(tmp_path / "fake" / "MNIST" / "raw")


# --- IDX files ----------------------------------------------------------------------------------


def test_idx_roundtrip_plain_gz_and_torchvision_layout(tmp_path: Path) -> None:
    plain = write_mnist(tmp_path / "plain")
    gz = write_mnist(tmp_path / "tv" / "MNIST" / "raw", gz=True)
    x1, y1 = data.load_mnist(plain, "train")
    x2, y2 = data.load_mnist(tmp_path / "tv", "train")  # found below root/MNIST/raw, gzipped
    assert x1.dtype == torch.uint8 and x1.shape == (200, 28, 28) and y1.dtype == torch.int64
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(y1, synthetic_digits(200, 1)[1])
    assert data.locate(tmp_path / "tv") == gz
    xt, _ = data.load_mnist(plain, "test")
    assert xt.shape == (100, 28, 28)


def test_idx_truncated_wrong_magic_and_extra_bytes() -> None:
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    good = idx_bytes(images, 0x803)
    assert data.parse_idx(good, expect_magic=0x803).shape == (3, 28, 28)
    with pytest.raises(DataError, match="truncated"):
        data.parse_idx(good[:-10], expect_magic=0x803)
    with pytest.raises(DataError, match="truncated inside its header"):
        data.parse_idx(good[:10], expect_magic=0x803)
    with pytest.raises(DataError, match="magic number"):
        data.parse_idx(good, expect_magic=0x801)
    with pytest.raises(DataError, match="magic number"):
        data.parse_idx(b"\x89PNG" + good[4:], expect_magic=0x803)
    with pytest.raises(DataError, match="beyond"):
        data.parse_idx(good + b"\0", expect_magic=0x803)


def test_label_count_mismatch_is_data_error(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path / "m")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(torch.zeros(7, dtype=torch.uint8), 0x801))
    with pytest.raises(DataError, match="7 labels for 100 images"):
        data.load_mnist(folder, "test")


def test_find_mnist_data_env_and_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist: Path) -> None:
    assert data.find_mnist(fake_mnist.parent.parent) == fake_mnist
    with pytest.raises(DataError, match="does not exist"):
        data.find_mnist(tmp_path / "nope")
    with pytest.raises(DataError, match="no MNIST IDX files"):
        data.find_mnist(tmp_path)
    monkeypatch.setenv("DL_DATA", str(fake_mnist))
    assert data.find_mnist(None) == fake_mnist
    monkeypatch.delenv("DL_DATA")
    with pytest.raises(DataError, match="--data DIR"):  # no data, no network: say how to get it
        data.find_mnist(None, offline=True)


# --- model and pieces of the trainer ------------------------------------------------------------


def test_deepconvnet_shape_params_and_init() -> None:
    from dlcli.models.deepconvnet import DeepConvNet

    torch.manual_seed(0)
    m = DeepConvNet()
    assert sum(p.numel() for p in m.parameters()) == 123_552
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    conv4 = m.conv_layers()[3]
    assert conv4.padding == (2, 2) and conv4.out_channels == 32
    fc1 = m.linear_layers()[0]
    assert fc1.in_features == 1024 and float(fc1.bias.detach().abs().sum()) == 0.0
    assert abs(float(fc1.weight.detach().std()) - (2 / 1024) ** 0.5) < 0.005  # He init


def test_augment_is_seeded_and_keeps_ink() -> None:
    from dlcli.data.mnist import to_float
    from dlcli.training.mnist import augment

    x = to_float(synthetic_digits(16, 0)[0])
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    c = augment(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert 0.7 < float(a.sum() / x.sum()) < 1.3  # small warps: about the same amount of ink


def test_confusion_pairs_and_grid() -> None:
    from dlcli.evaluation.mnist import confused_pairs, confusion_matrix, misclassified_grid

    target = torch.tensor([1, 1, 7, 7, 0, 6, 3])
    pred = torch.tensor([7, 1, 1, 1, 6, 6, 3])
    cm = confusion_matrix(pred, target)
    assert cm[1][7] == 1 and cm[7][1] == 2 and sum(map(sum, cm)) == 7
    pairs = confused_pairs(cm)
    assert pairs[0] == {"pair": "1/7", "count": 3, "1->7": 1, "7->1": 2}
    assert pairs[1]["pair"] == "0/6"
    images = torch.zeros(7, 28, 28, dtype=torch.uint8)
    grid = misclassified_grid(images, target, pred, scale=1)
    assert grid is not None and grid.size[0] > 4 * 28
    assert misclassified_grid(images, target, target) is None


def _cfg(**kw: object) -> "object":
    from dlcli.training.mnist import MnistTrainConfig

    base = dict(epochs=2, batch_size=50, lr=2e-3, augment=True, lr_schedule="cosine", seed=5, checkpoint_every=0)
    base.update(kw)
    return MnistTrainConfig(**base)  # type: ignore[arg-type]


def _data(n_train: int = 300, n_test: int = 100) -> dict[str, torch.Tensor]:
    tx, ty = synthetic_digits(n_train, 1)
    vx, vy = synthetic_digits(n_test, 2)
    return {"train_x": tx, "train_y": ty, "test_x": vx, "test_y": vy}


class _StopAt:
    """A reporter that presses Ctrl-C after `n` training steps."""

    def __init__(self, n: int) -> None:
        self.n = n

    def start(self, *a: object, **k: object) -> None: ...
    def finish(self) -> None: ...
    def message(self, text: str) -> None: ...
    def row(self, values: object) -> None: ...

    def advance(self, n: float = 1, **metrics: object) -> None:
        if metrics:
            self.n -= 1
            if self.n == 0:
                raise KeyboardInterrupt


def test_resume_after_interrupt_gives_the_same_weights(tmp_path: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.training.checkpoint import Interrupted
    from dlcli.training.mnist import train_member

    rt, d = Runtime.create("cpu", "fp32"), _data()
    whole = train_member(_cfg(), d, rt, member_seed=5, out_dir=tmp_path / "whole")
    with pytest.raises(Interrupted):
        train_member(_cfg(), d, rt, member_seed=5, out_dir=tmp_path / "cut", reporter=_StopAt(8))  # mid epoch 2
    state = json.loads(torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["progress"])
    assert (state["epoch"], state["step"]) == (1, 2)
    resumed = train_member(_cfg(), d, rt, member_seed=5, out_dir=tmp_path / "cut", resume=True)
    a, b = whole.model.state_dict(), resumed.model.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e.test_errors for e in whole.epochs] == [e.test_errors for e in resumed.epochs]
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    # One train and one test row per epoch, nothing repeated by the resume; the shared schema.
    assert [(r["split"], r["epoch"]) for r in rows] == [("train", 1), ("test", 1), ("train", 2), ("test", 2)]
    assert [r["errors"] for r in rows if r["split"] == "test"] == [e.test_errors for e in whole.epochs]
    assert json.loads((tmp_path / "cut" / "run.json").read_text())["state"] == "finished"
    with pytest.raises(InputError, match="different options"):
        train_member(_cfg(lr=1e-2), d, rt, member_seed=5, out_dir=tmp_path / "cut", resume=True)


def test_training_loss_falls_and_files_are_written(tmp_path: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.progress import RecordingReporter
    from dlcli.training.mnist import train_member

    rep = RecordingReporter()
    res = train_member(_cfg(epochs=3, augment=False, lr_schedule="none"), _data(), Runtime.create("cpu", "fp32"),
                       member_seed=1, out_dir=tmp_path, reporter=rep)
    losses = [e.loss for e in res.epochs]
    assert losses[-1] < losses[0] - 0.3, losses
    assert res.test_acc > 0.5  # the fake digits are easy
    assert [r["epoch"] for r in rep.rows] == [1, 2, 3]
    for name in ("best.safetensors", "last.safetensors", "metrics.jsonl", "checkpoint.pt"):
        assert (tmp_path / name).is_file(), name


# --- DDP ----------------------------------------------------------------------------------------

_DDP_WORKER = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.test_mnist import _cfg, _data
from dlcli.device import Runtime
from dlcli.training import distributed
from dlcli.training.mnist import train_member
dist = distributed.setup("cpu")
torch.set_num_threads(1)
res = train_member(_cfg(epochs=1, batch_size=40), _data(240, 40), Runtime.create("cpu", "fp32"), member_seed=3,
                   out_dir=Path({out!r}), dist=dist)
torch.save(res.model.state_dict(), Path({out!r}) / f"rank{{dist.rank}}.pt")
print("rank", dist.rank, "world", dist.world_size, "steps", len(res.epochs), "errors", res.test_errors)
dist.close()
"""


def test_ddp_two_cpu_processes_end_identical(tmp_path: Path) -> None:
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    out = tmp_path / "ddp"
    out.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER.format(root=str(ROOT), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 2" in proc.stdout
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    from dlcli.models.deepconvnet import DeepConvNet

    torch.manual_seed(3)
    init = DeepConvNet().state_dict()
    assert not torch.equal(init["features.0.weight"], r0["features.0.weight"])  # it did train
    # Only rank 0 wrote the run's files: one metrics line, not two.
    assert [json.loads(x)["split"] for x in (out / "metrics.jsonl").read_text().splitlines()] == ["train", "test"]


def test_shard_pads_and_splits() -> None:
    from dlcli.training.distributed import Dist

    idx = torch.arange(10)
    a, b, c = (Dist(rank=r, world_size=3).shard(idx) for r in range(3))
    assert len(a) == len(b) == len(c) == 4
    assert sorted(set(torch.cat([a, b, c]).tolist())) == list(range(10))
    assert torch.equal(Dist().shard(idx), idx)


# --- the command --------------------------------------------------------------------------------


def _cli(args: list[str]) -> "object":
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    return CliRunner().invoke(app, args)


def test_cli_train_json_then_evaluate_and_refusals(tmp_path: Path, fake_mnist: Path) -> None:
    out = tmp_path / "run"
    r = _cli(["train-mnist", "--data", str(fake_mnist), "--epochs", "2", "--batch-size", "50", "--lr", "0.002",
              "--out", str(out), "--json", "--quiet", "--seed", "2"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert len(rep["epochs"]) == 2 and rep["n"] == 100
    assert rep["accuracy"] == pytest.approx(1 - rep["errors"] / 100)
    for name in ("best.safetensors", "last.safetensors", "metrics.jsonl", "summary.json"):
        assert (out / name).is_file()
    # A second run into the same folder is refused without --force.
    r2 = _cli(["train-mnist", "--data", str(fake_mnist), "--epochs", "1", "--out", str(out), "--quiet"])
    assert r2.exit_code == 2 and "--resume" in r2.output
    # --evaluate reads what training wrote.
    r3 = _cli(["train-mnist", "--evaluate", "--weights-file", str(out / "last.safetensors"), "--data", str(fake_mnist), "--json"])
    assert r3.exit_code == 0, r3.output
    ev = json.loads(r3.stdout)
    assert ev["n"] == 100 and ev["errors"] == rep["errors"] and set(ev) >= {"accuracy", "errors", "n", "provenance"}


def test_cli_gpu_without_gpu_fails(fake_mnist: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = _cli(["train-mnist", "--gpu", "--data", str(fake_mnist)])
    assert r.exit_code == 4 and "not available" in r.output


def test_cli_bad_options(fake_mnist: Path, tmp_path: Path) -> None:
    r = _cli(["train-mnist", "--data", str(fake_mnist), "--lr-schedule", "exp", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "lr-schedule" in r.output
    r = _cli(["train-mnist", "--data", str(tmp_path / "missing")])
    assert r.exit_code == 5 and "does not exist" in r.output
    r = _cli(["train-mnist", "--resume", str(tmp_path / "empty"), "--data", str(fake_mnist)])
    assert r.exit_code == 2 and "no run to continue" in r.output and "training" not in r.output


@pytest.mark.slow
def test_real_mnist_smoke(tmp_path: Path) -> None:
    from conftest import shared_data

    raw = shared_data("MNIST", "raw")
    r = _cli(["train-mnist", "--data", str(raw), "--limit", "2000", "--epochs", "1", "--out", str(tmp_path / "r"),
              "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["accuracy"] > 0.6


def test_cli_ensemble_and_resume_of_a_finished_run(tmp_path: Path, fake_mnist: Path) -> None:
    out = tmp_path / "ens"
    args = ["train-mnist", "--data", str(fake_mnist), "--epochs", "1", "--batch-size", "50", "--lr", "0.002",
            "--ensemble", "2", "--json", "--quiet", "--seed", "4"]
    r = _cli(args + ["--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert [m["seed"] for m in rep["members"]] == [4, 5] and rep["ensemble"] == 2
    assert (out / "member-1" / "last.safetensors").is_file() and (out / "member-2" / "last.safetensors").is_file()
    assert (out / "summary.json").is_file()
    # Resuming a finished run trains nothing more and reports the same ensemble.
    r2 = _cli(args + ["--resume", str(out)])
    assert r2.exit_code == 0, r2.output
    assert json.loads(r2.stdout)["errors"] == rep["errors"]


def test_workers_build_the_same_batches() -> None:
    from dlcli.training.mnist import EpochBatches, _iterate

    d = _data(120, 10)
    ds = EpochBatches(d["train_x"], d["train_y"], torch.randperm(120), 50, augment_seed=9)
    inline = list(_iterate(ds, 1, 0))
    parallel = list(_iterate(ds, 1, 2))
    assert len(inline) == len(parallel) == 2 and inline[-1][0].shape[0] == 20
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(inline, parallel))


def test_find_mnist_downloads_through_torchvision_when_online(monkeypatch: pytest.MonkeyPatch, dl_home: Path) -> None:
    import torchvision.datasets

    calls: list[tuple[str, bool]] = []

    class FakeMNIST:  # stands in for the network: writes what torchvision's download would
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train))
            write_mnist(Path(root) / "MNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    monkeypatch.delenv("DL_DATA", raising=False)
    found = data.find_mnist(None)
    assert found == dl_home / "data" / "MNIST" / "raw" and len(calls) == 2
    assert data.find_mnist(None, offline=True) == found  # a later offline run reuses the download

    class Failing:
        def __init__(self, *a: object, **k: object) -> None:
            raise OSError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Failing)
    from dlcli.errors import NetworkError

    with pytest.raises(NetworkError, match="--data DIR"):
        data._download(dl_home / "other")


def test_interrupted_ensemble_says_to_resume_the_top_folder(tmp_path: Path, fake_mnist: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.training.checkpoint import Interrupted
    from dlcli.training.mnist import train

    with pytest.raises(Interrupted) as info:
        train(_cfg(epochs=1, ensemble=2), fake_mnist, Runtime.create("cpu", "fp32"), out_dir=tmp_path / "e",
              reporter=_StopAt(2))  # type: ignore[arg-type]
    assert info.value.message.endswith(f"--resume {tmp_path / 'e'}")
    assert (tmp_path / "e" / "member-1" / "checkpoint.pt").is_file()


# --- recipes, time budgets, weight averaging (issue 18) -------------------------------------------


def test_recipes_fill_in_only_what_the_user_did_not_give() -> None:
    from dlcli.training.configs import MNIST_RECIPES, MnistTrainConfig

    assert set(MNIST_RECIPES) == {"book", "fast", "best"}
    book = MnistTrainConfig().with_recipe()
    assert book == MnistTrainConfig()  # the defaults are the book's recipe
    fast = MnistTrainConfig(recipe_name="fast", epochs=2, lr=5e-3).with_recipe({"epochs"})
    assert fast.epochs == 2  # given: kept
    assert fast.lr == MNIST_RECIPES["fast"]["lr"]  # not given: the recipe's, whatever the field held
    assert (fast.lr_schedule, fast.logit_dropout, fast.ema) == ("onecycle", False, MNIST_RECIPES["fast"]["ema"])
    text = fast.describe_recipe()
    for word in ("recipe fast", "one-cycle", "2 epochs", "augmentation", "label smoothing 0.1", "none on the logits",
                 "EMA"):
        assert word in text
    with pytest.raises(InputError, match="unknown --recipe"):
        MnistTrainConfig(recipe_name="quick").with_recipe()
    # A budget without a recipe gets the fast one (its schedule anneals by the end); a named one stays.
    assert MnistTrainConfig(budget="2m").with_recipe({"budget"}).recipe_name == "fast"
    assert MnistTrainConfig(budget="2m", recipe_name="book").with_recipe({"budget", "recipe_name"}).lr_schedule == "none"
    for bad in (dict(warmup=1.0), dict(label_smoothing=0.7), dict(ema=1.0), dict(budget="soon")):
        with pytest.raises(InputError):
            MnistTrainConfig(**bad).check()  # type: ignore[arg-type]


def test_budget_durations() -> None:
    from dlcli.training.configs import parse_budget

    assert [parse_budget(t) for t in ("90s", "5m", "2m30s", "1h", "45", "0.5m")] == [90, 300, 150, 3600, 45, 30]
    for bad in ("", "m", "5 minutes", "0s", "-3", "200h"):
        with pytest.raises(InputError, match="--budget"):
            parse_budget(bad)


def test_fit_budget_steps_counts_the_evaluations_between_epochs() -> None:
    from dlcli.training.mnist import BUDGET_MARGIN, fit_budget_steps

    usable = 1 - BUDGET_MARGIN
    # 100 steps/s, 10 steps per epoch, free evaluations: the whole usable budget is steps.
    assert fit_budget_steps(10.0, 100.0, 0.0, 10) == int(10 * usable * 100)
    # 1 s per evaluation, 100 steps (1 s) per epoch: 5 epochs and the 4 evaluations between them
    # take 9 s of the 9.6 s usable; a 6th epoch would leave 4.6 s of steps: fewer than 5 epochs.
    assert fit_budget_steps(10.0, 100.0, 1.0, 100) == 500
    # With 10.5 s, 5 evaluations leave room for 5 epochs and part of a 6th.
    assert fit_budget_steps(10.5, 100.0, 1.0, 100) == int((10.5 * usable - 5) * 100)
    assert fit_budget_steps(0.001, 1.0, 5.0, 10) == 1  # never nothing
    # Half-way into an epoch (a re-fit during training): the first epoch ends after 50 more steps.
    assert abs(fit_budget_steps(10.0, 100.0, 1.0, 100, start=50) - 460) <= 1  # 4.6 s of 100 steps/s, rounded down


def test_averaged_one_cycle_run_resumes_bit_identical(tmp_path: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.training.checkpoint import Interrupted
    from dlcli.training.mnist import train_member

    cfg = _cfg(lr_schedule="onecycle", warmup=0.3, label_smoothing=0.1, logit_dropout=False, ema=0.9)
    rt, d = Runtime.create("cpu", "fp32"), _data()
    whole = train_member(cfg, d, rt, member_seed=5, out_dir=tmp_path / "whole")
    assert whole.model is not None and whole.model.classifier[5].p == 0.0  # type: ignore[index]
    with pytest.raises(Interrupted):
        train_member(cfg, d, rt, member_seed=5, out_dir=tmp_path / "cut", reporter=_StopAt(9))
    resumed = train_member(cfg, d, rt, member_seed=5, out_dir=tmp_path / "cut", resume=True)
    a, b = whole.model.state_dict(), resumed.model.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The averaged weights are what was evaluated and saved, not the raw ones.
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "whole" / "last.safetensors"))
    assert all(torch.equal(saved[k], a[k]) for k in a)
    plain = train_member(_cfg(lr_schedule="onecycle", warmup=0.3, label_smoothing=0.1, logit_dropout=False), d, rt,
                         member_seed=5, out_dir=None)
    assert not all(torch.equal(plain.model.state_dict()[k], a[k]) for k in a)  # type: ignore[union-attr]


class _Tick:
    """A virtual clock for the trainer: every reading is `dt` seconds after the previous one, so
    a budget's arithmetic is tested without depending on how busy this machine is."""

    def __init__(self, dt: float) -> None:
        self.t, self.dt = 1000.0, dt

    def __call__(self) -> float:
        self.t += self.dt
        return self.t


def test_budget_fits_the_schedule_and_stops_in_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.device import Runtime
    from dlcli.training import mnist as trainer

    rt, d = Runtime.create("cpu", "fp32"), _data(n_train=600)
    cfg = _cfg(budget="3s", lr_schedule="onecycle", epochs=1)
    monkeypatch.setattr(trainer.time, "perf_counter", _Tick(0.03))
    res = trainer.train_member(cfg, d, rt, member_seed=1, out_dir=tmp_path / "fit")
    assert 1 <= res.steps <= res.planned_steps
    assert res.planned_steps > 12  # 3 s hold more than the 12 steps of --epochs 1: the budget decides
    assert res.train_seconds <= 3.0 + 0.3  # the budget, plus the readings of the last step and evaluation (0.03 s each)
    assert (tmp_path / "fit" / "best.safetensors").is_file()
    assert res.best_acc >= max(e.test_acc for e in res.epochs)
    # A machine that turns slow after measuring (here: a fit far beyond the budget): the clock
    # stops the run in time, before its schedule ends, and the best net so far is kept.
    monkeypatch.setattr(trainer, "fit_budget_steps", lambda *a: 100_000)
    monkeypatch.setattr(trainer.time, "perf_counter", _Tick(0.03))
    slow = trainer.train_member(cfg, d, rt, member_seed=1, out_dir=tmp_path / "slow")
    assert slow.train_seconds <= 3.0 + 0.3
    # The first epoch's end re-fitted the schedule: the steps done plus the (patched) fit.
    assert slow.planned_steps > 100_000 and 0 < slow.steps < slow.planned_steps
    assert slow.epochs and slow.best_acc >= max(e.test_acc for e in slow.epochs)
    assert json.loads((tmp_path / "slow" / "run.json").read_text())["state"] == "finished"


def test_budget_run_resumes_with_its_fitted_schedule(tmp_path: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.training.checkpoint import Interrupted
    from dlcli.training.mnist import train_member

    rt, d = Runtime.create("cpu", "fp32"), _data()
    cfg = _cfg(budget="1h", epochs=1)
    with pytest.raises(Interrupted):
        train_member(cfg, d, rt, member_seed=2, out_dir=tmp_path / "b", reporter=_StopAt(3))
    planned = json.loads(torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["progress"])["total_steps"]
    assert planned > 6  # an hour holds far more than one epoch of 6 steps
    # Resuming must not measure again (the schedule is the saved one): stop it right away.
    with pytest.raises(Interrupted):
        train_member(cfg, d, rt, member_seed=2, out_dir=tmp_path / "b", resume=True, reporter=_StopAt(1))
    state = json.loads(torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["progress"])
    assert state["total_steps"] == planned and (state["epoch"], state["step"]) == (0, 4)


def test_precision_auto_picks_bf16_for_training_only_where_native(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli import device

    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    dtype, notice = device.resolve_precision("auto", cpu, training=True)
    assert dtype == torch.bfloat16 and "bf16" in notice and "avx512_bf16" in notice  # type: ignore[operator]
    assert device.resolve_precision("auto", cpu) == (torch.float32, None)  # inference: unchanged
    monkeypatch.setattr(device, "_cpu_flags", lambda: {"avx2", "fma"})
    dtype, notice = device.resolve_precision("auto", cpu, training=True)
    assert dtype == torch.float32 and "no native bf16" in notice  # type: ignore[operator]
    assert device.resolve_precision("bf16", cpu, training=True)[0] == torch.bfloat16  # asked for: given
    assert device.native_bf16(cpu, {"amx_bf16"})[0] and device.native_bf16(cpu, {"bf16", "asimd"})[0]


def test_a_spent_budget_still_trains_one_step() -> None:
    """Loading the data and measuring the speed may use up a short --budget on a busy machine: the
    run still takes the one step fit_budget_steps promises, instead of reporting an untrained net."""
    import time

    from dlcli.device import Runtime
    from dlcli.training.mnist import train_member

    res = train_member(_cfg(budget="2s"), _data(), Runtime.create("cpu", "fp32"), member_seed=5, out_dir=None,
                       started=time.perf_counter() - 60.0)  # the clock ran out a minute ago
    assert res.steps == 1 and len(res.epochs) == 1


def test_cli_recipe_budget_and_precision_messages(tmp_path: Path, fake_mnist: Path) -> None:
    r = _cli(["train-mnist", "--data", str(fake_mnist), "--recipe", "fast", "--epochs", "1", "--batch-size", "50",
              "--out", str(tmp_path / "fast"), "--json", "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    assert "recipe fast" in r.stderr and "1 epochs" in r.stderr and "one-cycle" in r.stderr
    cfg = json.loads((tmp_path / "fast" / "config.json").read_text())
    assert (cfg["recipe_name"], cfg["epochs"], cfg["lr_schedule"], cfg["ema"]) == ("fast", 1, "onecycle", 0.999)
    r = _cli(["train-mnist", "--data", str(fake_mnist), "--budget", "2s", "--batch-size", "50",
              "--out", str(tmp_path / "budget"), "--json"])
    assert r.exit_code == 0, r.output
    assert "budget 2s:" in r.stderr and "test accuracy reached" in r.stderr and "precision auto:" in r.stderr
    assert "recipe fast" in r.stderr  # a budget without --recipe: the fast one
    member = json.loads(r.stdout)["members"][0]
    assert 1 <= member["steps"] <= member["planned_steps"] and member["seconds"] > 0
    r = _cli(["train-mnist", "--data", str(fake_mnist), "--budget", "soon", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--budget" in r.output and "Traceback" not in r.output
    r = _cli(["train-mnist", "--data", str(fake_mnist), "--recipe", "quick", "--out", str(tmp_path / "y")])
    assert r.exit_code == 2 and "unknown --recipe" in r.output
