"""`dl generate`: seeded grids, latent walks, JSON, errors (a tiny random generator file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.models.dcgan import Generator
from dlcli.weights.store import save_weights_file

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def gen_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DL_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    cfg = {"latent_dim": 8, "channels": 1, "image_size": 28, "width": 8}
    g = Generator(**cfg)
    path = tmp_path / "g.safetensors"
    save_weights_file(path, g.state_dict(), {"name": "dcgan.tiny", "arch": "dcgan", "task": "generate", "config": cfg,
                                             "labels": None, "preprocess": "dcgan", "preprocess_args": {},
                                             "metrics": {}, "recipe": "random"})
    return path


def test_same_seed_same_grid_other_seed_other_grid(gen_file: Path, tmp_path: Path) -> None:
    outs = []
    for name, seed in (("a.png", 5), ("b.png", 5), ("c.png", 6)):
        r = runner.invoke(app, ["generate", "--weights-file", str(gen_file), "--n", "9", "--seed", str(seed),
                                "--out", str(tmp_path / name), "--device", "cpu"])
        assert r.exit_code == 0, r.output
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    assert Image.open(tmp_path / "a.png").size == (3 * 56 + 4 * 2,) * 2  # 3x3 tiles at 2x, 2 px padding


def test_interpolate_writes_gif_and_strip_and_json(gen_file: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["generate", "--weights-file", str(gen_file), "--interpolate", "3", "--frames", "4",
                            "--out", str(tmp_path / "walk.png"), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["files"] == [str(tmp_path / "walk.gif"), str(tmp_path / "walk.png")]
    assert data["kind"] == "interpolation" and data["n"] == 12 and data["seed"] == 0
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames == 12


def test_existing_output_is_kept_without_force(gen_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    out.write_bytes(b"x")
    r = runner.invoke(app, ["generate", "--weights-file", str(gen_file), "--out", str(out), "--device", "cpu"])
    assert r.exit_code != 0 and "already exists" in r.output
    assert out.read_bytes() == b"x"


def test_bad_counts_are_input_errors(gen_file: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["generate", "--weights-file", str(gen_file), "--n", "0", "--out", str(tmp_path / "g.png")])
    assert r.exit_code != 0 and "--n" in r.output
    r = runner.invoke(app, ["generate", "--weights-file", str(gen_file), "--interpolate", "1",
                            "--out", str(tmp_path / "g.png")])
    assert r.exit_code != 0 and "--interpolate" in r.output


def test_slerp_keeps_endpoints() -> None:
    from dlcli.tasks.generate import slerp, walk

    a, b = torch.randn(8), torch.randn(8)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    assert walk(torch.stack([a, b]), 3).shape == (6, 8)


def test_train_command_on_a_folder_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DL_HOME", str(tmp_path / "home"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(8):
        Image.fromarray((torch.rand(32, 32, 3) * 255).to(torch.uint8).numpy()).save(folder / f"{i}.png")
    run = tmp_path / "run"
    args = ["generate", "train", str(folder), "--out", str(run), "--epochs", "1", "--batch-size", "4",
            "--image-size", "32", "--width", "8", "--latent-dim", "8", "--device", "cpu", "--json", "--quiet"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["steps"] == 2 and Path(data["weights_file"]).is_file()
    # Same folder again: refused without --resume/--force; --resume with more epochs continues.
    r = runner.invoke(app, args)
    assert r.exit_code != 0 and "--resume" in r.output
    r = runner.invoke(app, ["generate", "train", str(folder), "--resume", str(run), "--epochs", "2", "--json",
                            "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["steps"] == 4 and data["resumed_from_step"] == 2 and data["epochs"] == 2


def test_bundled_dcgan_mnist_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.weights import registry, store

    monkeypatch.setenv("DL_HOME", str(tmp_path / "home"))
    spec = registry.lookup("dcgan.mnist")
    if spec is None or not store.is_present(spec):
        pytest.skip(reason="weights/dcgan.mnist.safetensors is not bundled in this checkout")
    r = runner.invoke(app, ["generate", "--n", "4", "--out", str(tmp_path / "g.png"), "--json", "--offline",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["model"] == "dcgan.mnist" and data["provenance"]["weights_sha256"] == spec.source.sha256
    assert Image.open(tmp_path / "g.png").size == (2 * 56 + 3 * 2,) * 2


def test_train_command_passes_the_recipe_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.training import dcgan as trainer

    seen: dict = {}

    def fake_train(cfg, out_dir, **kw):  # the heavy call: only its arguments matter here
        seen["cfg"] = cfg
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train_dcgan", fake_train)
    folder = tmp_path / "imgs"
    folder.mkdir()
    r = runner.invoke(app, ["generate", "train", str(folder), "--out", str(tmp_path / "run"), "--lr", "1e-4",
                            "--lr-d", "4e-4", "--beta1", "0", "--beta2", "0.9", "--lr-schedule", "linear",
                            "--loss", "hinge", "--d-norm", "spectral", "--init-from", "dcgan.mnist",
                            "--label-smoothing", "0", "--device", "cpu", "--quiet"])
    assert r.exit_code == 130
    cfg = seen["cfg"]
    assert (cfg.lr, cfg.lr_d, cfg.beta1, cfg.beta2) == (1e-4, 4e-4, 0.0, 0.9)
    assert (cfg.lr_schedule, cfg.loss, cfg.d_norm, cfg.init_from, cfg.label_smoothing) == \
        ("linear", "hinge", "spectral", "dcgan.mnist", 0.0)


def test_train_command_refuses_an_unknown_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DL_HOME", str(tmp_path / "home"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray((torch.rand(32, 32, 3) * 255).to(torch.uint8).numpy()).save(folder / "0.png")
    Image.fromarray((torch.rand(32, 32, 3) * 255).to(torch.uint8).numpy()).save(folder / "1.png")
    r = runner.invoke(app, ["generate", "train", str(folder), "--out", str(tmp_path / "run"), "--loss", "wgan",
                            "--image-size", "32", "--width", "8", "--device", "cpu", "--quiet"])
    assert r.exit_code == 2 and "--loss must be one of bce, hinge" in r.output
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_committed_sample_grid_is_what_the_bundled_generator_draws(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/dcgan.mnist.png (shown in the README) must be the grid the shipped weights give for
    `dl generate --n 64 --seed 0`, so a weights update cannot leave a stale picture behind."""
    from dlcli.weights import registry, store

    monkeypatch.setenv("DL_HOME", str(tmp_path / "home"))
    spec = registry.lookup("dcgan.mnist")
    if spec is None or not store.is_present(spec):
        pytest.skip(reason="weights/dcgan.mnist.safetensors is not bundled in this checkout")
    committed = Path(__file__).parents[1] / "docs" / "dcgan.mnist.png"
    r = runner.invoke(app, ["generate", "--n", "64", "--seed", "0", "--out", str(tmp_path / "g.png"), "--offline",
                            "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    import numpy as np

    ours = np.asarray(Image.open(tmp_path / "g.png").convert("L"), dtype=np.int16)
    theirs = np.asarray(Image.open(committed).convert("L"), dtype=np.int16)
    assert ours.shape == theirs.shape == (8 * 56 + 9 * 2,) * 2
    # Another CPU may round a few pixels differently; a different generator changes most of them.
    assert float(np.abs(ours - theirs).mean()) < 0.5 and int(np.abs(ours - theirs).max()) <= 8
