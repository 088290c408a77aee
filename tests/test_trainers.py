"""The seven trainers share one run folder (dlcli/training/run.py). For each, on tiny data through
the CLI: a run leaves the same files and metrics schema; a second run into the folder is refused;
--resume DIR continues with the run's own settings; --force starts over; Ctrl-C leaves a
checkpoint that --resume turns into the same weights as an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.errors import EXIT_INTERRUPTED

runner = CliRunner()


def _mnist(tmp: Path) -> list[str]:
    from test_mnist import write_mnist

    return ["--data", str(write_mnist(tmp / "mnist", n_train=120, n_test=40)), "--batch-size", "20",
            "--checkpoint-every", "2"]


def _digits_folder(tmp: Path) -> list[str]:
    from test_hostile import ones_and_sevens

    ones_and_sevens(tmp / "digits", per_class=4)
    return [str(tmp / "digits"), "--from", "deepconvnet.mnist", "--no-augment", "--batch-size", "2",
            "--val-split", "0.25"]


def _images(tmp: Path) -> list[str]:
    folder = tmp / "imgs"
    folder.mkdir(exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    for i in range(12):
        Image.fromarray((torch.rand(32, 32, 3, generator=gen) * 255).to(torch.uint8).numpy()).save(folder / f"{i}.png")
    return [str(folder), "--image-size", "32", "--width", "8", "--latent-dim", "8", "--batch-size", "4",
            "--checkpoint-every", "1"]


SCENE_TINY = ["--steps-per-epoch", "2", "-b", "2", "--val-size", "2", "--image-size", "32"]

# trainer -> (command words, options of a tiny run given a temporary folder, the option that makes a
# run longer, its first and its longer value)
TRAINERS: dict[str, tuple[list[str], Callable[[Path], list[str]], str, str, str]] = {
    "mnist": (["train-mnist"], _mnist, "--epochs", "1", "2"),
    "classify": (["classify", "train"], _digits_folder, "--epochs", "1", "2"),
    "detect": (["detect", "train"], lambda tmp: SCENE_TINY + ["--width", "8", "--out-channels", "16",
                                                              "--representation", "32"], "--epochs", "1", "2"),
    "segment": (["segment", "train"], lambda tmp: list(SCENE_TINY), "--epochs", "1", "2"),
    "caption": (["caption", "train"], lambda tmp: ["--data", "scenes", "--train-size", "16", "--val-size", "4",
                                                   "--image-size", "64", "--batch-size", "8", "--cnn-width", "4",
                                                   "--embed-dim", "16", "--hidden-dim", "16"], "--epochs", "1", "2"),
    "generate": (["generate", "train"], _images, "--epochs", "1", "2"),
    "dqn": (["play-dqn", "train"], lambda tmp: ["--env", "Breakout", "--learning-starts", "20", "--buffer-size", "100",
                                                "--batch-size", "8", "--eval-every", "0", "--log-every", "20",
                                                "--exploration-fraction", "0.5"], "--steps", "40", "60"),
}


def _cli(words: list[str], *args: str) -> object:
    return runner.invoke(app, [*words, *args, "--quiet", "--device", "cpu", "--seed", "0"])


def _resume_args(trainer: str, args: list[str]) -> list[str]:
    """What --resume still needs: the data (a positional DATA, or where the MNIST files are)."""
    return {"classify": args[:1], "generate": args[:1], "mnist": args[:2]}.get(trainer, [])


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_one_run_folder_refuse_resume_force(trainer: str, tmp_path: Path) -> None:
    if trainer == "dqn":
        pytest.importorskip("ale_py", reason="Atari needs the atari extra (gymnasium, ale-py)")
    words, make, longer, first, more = TRAINERS[trainer]
    args = make(tmp_path)
    run = tmp_path / "run"
    r = _cli(words, *args, longer, first, "--out", str(run))
    assert r.exit_code == 0, r.output
    for name in ("config.json", "run.json", "metrics.jsonl", "checkpoint.pt", "last.safetensors"):
        assert (run / name).is_file(), name
    state = json.loads((run / "run.json").read_text())
    assert state["task"] == json.loads((run / "config.json").read_text())["task"] and state["state"] == "finished"
    rows = _rows(run)
    assert rows and all({"step", "epoch", "split", "time"} <= set(r) for r in rows)
    assert {r["split"] for r in rows} <= {"train", "val", "test", "eval"} and "train" in {r["split"] for r in rows}
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps)

    again = _cli(words, *args, longer, first, "--out", str(run))
    assert again.exit_code == 2 and f"--resume {run}" in again.output and "--force" in again.output

    # --resume DIR: the run's own settings, only the budget grows
    cont = _cli(words, *_resume_args(trainer, args), longer, more, "--resume", str(run))
    assert cont.exit_code == 0, cont.output
    rows2 = _rows(run)
    assert len(rows2) > len(rows) and rows2[: len(rows)] == rows  # continued, nothing rewritten
    assert json.loads((run / "run.json").read_text())["state"] == "finished"

    fresh = _cli(words, *args, longer, first, "--out", str(run), "--force")
    assert fresh.exit_code == 0, fresh.output
    assert len(_rows(run)) == len(rows)  # started over


# Ctrl-C after this many progress updates (mid-run, not at the very start).
INTERRUPT_AT = {"mnist": 8, "classify": 3, "detect": 3, "segment": 3, "caption": 3, "generate": 4}


@pytest.mark.parametrize("trainer", sorted(INTERRUPT_AT))
def test_ctrl_c_then_resume_gives_the_uninterrupted_weights(trainer: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.render import RichReporter
    from dlcli.weights.store import read_state_dict

    words, make, longer, _, more = TRAINERS[trainer]
    args = make(tmp_path)
    whole = _cli(words, *args, longer, more, "--out", str(tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output

    real = RichReporter.advance
    calls = {"n": 0}

    def interrupting(self, n=1, **metrics):
        calls["n"] += 1
        if calls["n"] == INTERRUPT_AT[trainer]:
            raise KeyboardInterrupt
        return real(self, n, **metrics)

    monkeypatch.setattr(RichReporter, "advance", interrupting)
    cut = tmp_path / "cut"
    r = _cli(words, *args, longer, more, "--out", str(cut))
    assert r.exit_code == EXIT_INTERRUPTED, r.output
    assert "--resume" in r.output and (cut / "checkpoint.pt").is_file()
    assert json.loads((cut / "run.json").read_text())["state"] == "interrupted"
    monkeypatch.setattr(RichReporter, "advance", real)
    r = _cli(words, *_resume_args(trainer, args), "--resume", str(cut))
    assert r.exit_code == 0, r.output
    a, _ = read_state_dict(tmp_path / "whole" / "last.safetensors")
    b, _ = read_state_dict(cut / "last.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.allclose(a[k].float(), b[k].float(), atol=1e-6)]
    assert not different, different[:5]


def test_dqn_ctrl_c_then_resume_reaches_the_step_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DQN resumes its networks, optimiser, counters and (with --checkpoint-buffer) the replay
    buffer, but not the emulator's state: the game in progress starts again, so the weights are
    not bit-identical to an uninterrupted run's. What a user relies on is checked: Ctrl-C leaves a
    checkpoint, and --resume continues to the budget."""
    pytest.importorskip("ale_py", reason="Atari needs the atari extra (gymnasium, ale-py)")
    from dlcli.training.replay import ReplayBuffer

    words, make, longer, _, more = TRAINERS["dqn"]
    real = ReplayBuffer.add
    calls = {"n": 0}

    def interrupting(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(ReplayBuffer, "add", interrupting)
    cut = tmp_path / "cut"
    r = _cli(words, *make(tmp_path), longer, more, "--checkpoint-buffer", "--out", str(cut))
    assert r.exit_code == EXIT_INTERRUPTED and f"--resume {cut}" in r.output, r.output
    assert json.loads((cut / "run.json").read_text())["state"] == "interrupted" and (cut / "replay.npz").is_file()
    monkeypatch.setattr(ReplayBuffer, "add", real)
    r = _cli(words, "--resume", str(cut), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["steps"] == int(more)
    assert json.loads((cut / "run.json").read_text())["state"] == "finished"


@pytest.mark.parametrize("trainer", ["detect", "segment", "caption"])
def test_two_process_torchrun_ends_with_identical_replicas(trainer: str, tmp_path: Path) -> None:
    """The same command under `torchrun --nproc_per_node 2` (gloo on the CPU): each rank trains on
    its share of every batch, rank 0 writes the run, and both ranks end with the same weights."""
    import os
    import subprocess
    import sys

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    words, make, longer, first, _ = TRAINERS[trainer]
    run = tmp_path / "run"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root), "DL_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dlcli",
           *words, *make(tmp_path), longer, first, "--out", str(run), "--device", "cpu", "--seed", "0", "--quiet",
           "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((run / "run.json").read_text())
    assert state["state"] == "finished" and state["world_size"] == 2 and state["ranks_identical"] is True
    assert json.loads(proc.stdout)  # one report, from rank 0 only
    assert [r["split"] for r in _rows(run)].count("train") == 1  # rank 0 alone wrote the metrics
