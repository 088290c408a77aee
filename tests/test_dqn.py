"""play-dqn (issue 8): Q-network, Atari preprocessing, the uint8 replay buffer, a tiny training run,
playing with weights, name matching. Kept fast: tiny buffers, batches of 4, a few hundred steps."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.errors import InputError
from dlcli.models.qnetwork import QNetwork
from dlcli.training.replay import ReplayBuffer

runner = CliRunner()
gym = pytest.importorskip("gymnasium", reason="gymnasium is not installed (pip install 'dlcli[atari]')")
pytest.importorskip("ale_py", reason="ale-py is not installed (pip install 'dlcli[atari]')")

from dlcli.data import atari  # noqa: E402


# --- model --------------------------------------------------------------------------------------


def test_qnetwork_is_the_nature_cnn():
    net = QNetwork(6)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)), (64, (3, 3), (1, 1))]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(3136, 512), (512, 6)]
    x = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    out = net(x)
    assert out.shape == (2, 6) and out.dtype == torch.float32
    # uint8 input is scaled inside: the same as feeding floats in [0, 1]
    torch.testing.assert_close(out, net(x.float() / 255))


# --- environments -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Breakout", "breakout", "ALE/Breakout-v5", "BreakoutNoFrameskip-v4", " BREAKOUT "])
def test_game_names(name):
    assert atari.resolve_game(name) == "ALE/Breakout-v5"


def test_unknown_game_suggests():
    with pytest.raises(InputError, match="did you mean 'Breakout'"):
        atari.resolve_game("Breakot")


def test_roms_status_for_doctor():
    status = atari.atari_roms_status()
    assert status["ok"] is True, status
    assert status["roms"] > 50 and not status["missing"]
    atari.check_rom("ALE/Breakout-v5")  # does not raise


def _wrapper(env, cls_name):
    while env is not None:
        if type(env).__name__ == cls_name:
            return env
        env = getattr(env, "env", None)
    return None


def test_preprocessing_shapes_and_settings():
    env = atari.make_env("Breakout", training=True, seed=0)
    try:
        obs, info = env.reset(seed=0)
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
        pre = _wrapper(env, "AtariPreprocessing")
        assert pre.frame_skip == 4 and pre.noop_max == 30 and pre.screen_size == (84, 84)
        assert pre.grayscale_obs and not pre.scale_obs
        # frame skip 4 with max-pooling: the wrapper keeps the last two raw frames
        assert len(pre.obs_buffer) == 2
        assert env.unwrapped._frameskip == 1  # the emulator itself does not skip (the wrapper does)
        frame0 = info["episode_frame_number"]
        obs2, *_rest, info2 = env.step(0)
        assert info2["episode_frame_number"] - frame0 == 4
        assert obs2.shape == (4, 84, 84) and obs2.dtype == np.uint8
    finally:
        env.close()


def _play_random(env, steps, seed=0):
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    events = []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        events.append((reward, terminated, info.get("lives"), "episode" in info))
        if terminated or truncated:
            env.reset()
    return events


def test_training_env_clips_rewards_and_ends_on_life_loss():
    env = atari.make_env("Breakout", training=True, seed=0)
    try:
        events = _play_random(env, 400)
    finally:
        env.close()
    assert {r for r, *_ in events} <= {-1.0, 0.0, 1.0}
    # a terminal step where lives are left: a lost life ends the training episode
    assert any(term and lives and lives > 0 for _, term, lives, _ in events)


def test_eval_env_plays_full_games_with_raw_scores():
    env = atari.make_env("Breakout", training=False, seed=0)
    try:
        events = _play_random(env, 400)
    finally:
        env.close()
    # every termination is a game over (no lives left), never a lost life
    assert all(lives == 0 for _, term, lives, _ in events if term)
    assert all(ep for _, term, _, ep in events if term)


# --- replay buffer ------------------------------------------------------------------------------


def _fill(buf, episode_lengths):
    """Frame value = global step number (1, 2, …); each episode's last step is terminal."""
    value = 0
    for length in episode_lengths:
        for t in range(length):
            value += 1
            buf.add(np.full((4, 2, 2), value, np.uint8), value % 3, float(value), t == length - 1)


def test_replay_stacks_never_cross_episodes():
    buf = ReplayBuffer(12, frame_shape=(2, 2), seed=0)
    _fill(buf, [3, 5, 4, 6])  # 18 steps into 12 slots: the first 6 are overwritten
    episode_of = {}
    value = 0
    for e, length in enumerate([3, 5, 4, 6]):
        for _ in range(length):
            value += 1
            episode_of[value] = e
    for _ in range(20):
        batch = buf.sample(16)
        for obs, nxt, done in zip(batch["obs"][:, :, 0, 0], batch["next_obs"][:, :, 0, 0], batch["dones"]):
            newest = int(obs[-1])
            assert newest >= 7  # overwritten steps never come back
            # one episode per stack, frames in order, padding only by repeating the oldest frame
            assert len({episode_of[int(v)] for v in obs}) == 1
            assert all(b - a in (0, 1) for a, b in zip(obs[:-1], obs[1:]))
            assert all(int(v) >= 7 for v in obs)
            if not done:
                assert list(nxt[:-1]) == list(obs[1:]) and nxt[-1] == newest + 1
    # a stack at an episode's first step is that frame four times (what the env shows at reset)
    idx = np.array([int(np.flatnonzero(buf.frames[:, 0, 0] == 13)[0])])
    assert buf.frames[buf._stack_indices(idx)][0, :, 0, 0].tolist() == [13, 13, 13, 13]


def test_replay_n_step_returns_stop_at_episode_end():
    buf = ReplayBuffer(32, frame_shape=(2, 2), seed=0)
    _fill(buf, [3, 5])
    for _ in range(10):
        b = buf.sample(8, n_step=3, gamma=0.5)
        for obs, r, disc, done, nxt in zip(b["obs"][:, -1, 0, 0], b["rewards"], b["discounts"], b["dones"],
                                           b["next_obs"][:, -1, 0, 0]):
            v = int(obs)
            end = 3 if v <= 3 else 8
            m = min(3, end - v + 1)
            assert r == pytest.approx(sum(0.5 ** k * (v + k) for k in range(m)))
            assert disc == pytest.approx(0.5 ** m)
            assert done == float(v + m - 1 == end)
            if not done:
                assert int(nxt) == v + m


def test_replay_skips_truncated_steps():
    buf = ReplayBuffer(16, frame_shape=(2, 2), seed=0)
    for v in range(1, 9):
        buf.add(np.full((4, 2, 2), v, np.uint8), 0, 1.0, False, truncated=(v == 4))
    for _ in range(10):
        assert 4 not in buf.sample(16)["obs"][:, -1, 0, 0]


def test_replay_memory_is_one_frame_per_transition():
    n = 5000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        buf = ReplayBuffer(n, seed=0)
        obs = np.zeros((4, 84, 84), np.uint8)
        for i in range(n + 10):
            buf.add(obs, 1, 0.0, i % 100 == 99)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used <= 1.1 * n * 84 * 84, used / (n * 84 * 84)
    assert buf.nbytes <= 1.1 * n * 84 * 84
    assert len(buf) == n


# --- training and playing -----------------------------------------------------------------------


def _tiny_config(**kw):
    from dlcli.training.dqn import DQNConfig

    base = dict(env="Breakout", total_steps=160, buffer_size=300, learning_starts=40, batch_size=4,
                exploration_fraction=0.5, eval_every=0, log_every=80, checkpoint_every=1e9, seed=3)
    base.update(kw)
    return DQNConfig(**base)


def test_tiny_training_run_saves_weights_and_resumes(tmp_path):
    from dlcli.device import Runtime
    from dlcli.progress import RecordingReporter
    from dlcli.training.dqn import train_dqn
    from dlcli.weights.loader import load_model

    rt = Runtime.create("cpu", "fp32", seed=0)
    out = tmp_path / "run"
    rep = RecordingReporter()
    report = train_dqn(_tiny_config(total_steps=120, n_step=3, double=True, checkpoint_buffer=True), out,
                       runtime=rt, reporter=rep)
    assert report.steps == 120 and report.final_weights.is_file()
    assert (out / "checkpoint.pt").is_file() and (out / "replay.npz").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["split"] == "train" and rows[-1]["step"] == 120 and rows[-1]["loss"] is not None
    assert report.final_weights == out / "last.safetensors"
    assert json.loads((out / "run.json").read_text())["state"] == "finished"
    loaded = load_model(task="dqn", file=report.final_weights)
    assert loaded.spec.name == "dqn.breakout" and loaded.spec.extra["env"] == "ALE/Breakout-v5"
    assert loaded.model.n_actions == 4 and loaded.labels == ["NOOP", "FIRE", "RIGHT", "LEFT"]

    with pytest.raises(InputError, match="--resume"):
        train_dqn(_tiny_config(total_steps=120), out, runtime=rt)
    with pytest.raises(InputError, match="other settings"):
        train_dqn(_tiny_config(total_steps=200, learning_rate=3e-4, n_step=3, double=True), out, runtime=rt,
                  resume=True)
    report2 = train_dqn(_tiny_config(total_steps=200, n_step=3, double=True), out, runtime=rt, resume=True,
                        reporter=rep)
    assert report2.steps == 200
    assert any("resumed at step 120" in m for m in rep.messages)

    # the CLI resumes with the run's own settings; --steps may grow, other changes are reported
    from dlcli.training.dqn import resume_config

    cfg, ignored = resume_config(out, _tiny_config(total_steps=400, learning_rate=5e-4))
    assert cfg.total_steps == 400 and cfg.n_step == 3 and cfg.double and cfg.learning_rate == 1e-4
    assert ignored == ["learning_rate=0.0005 (the run uses 0.0001)"]
    result = runner.invoke(app, ["play-dqn", "train", "--resume", str(out), "--steps", "240",
                                 "--log-every", "40", "--json", "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 240


def test_play_one_episode_with_weights_file_and_record(tmp_path):
    from dlcli.device import Runtime
    from dlcli.training.dqn import train_dqn

    report = train_dqn(_tiny_config(total_steps=60, learning_starts=30), tmp_path / "run",
                       runtime=Runtime.create("cpu", "fp32"))
    gif = tmp_path / "game.gif"
    result = runner.invoke(app, ["play-dqn", "--weights-file", str(report.final_weights), "--episodes", "1",
                                 "--epsilon", "1.0", "--record", str(gif), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["game"] == "Breakout" and len(data["agent"]["episodes"]) == 1
    assert "epsilon 1" in data["protocol"] and "no-ops" in data["protocol"]
    assert data["agent"]["episodes"][0]["steps"] > 10
    from PIL import Image

    with Image.open(gif) as im:
        assert im.format == "GIF" and im.size == (160, 210) and im.n_frames > 5
    # export: from the run folder's checkpoint, with a measured metric merged in, as a manifest record
    from dlcli.training.dqn import export_weights
    from dlcli.weights.store import read_state_dict, sha256_file

    dest = tmp_path / "dqn.test.safetensors"
    record = export_weights(tmp_path / "run" / "checkpoint.pt", dest, metrics={"eval_mean": 1.5}, name="dqn.test")
    assert record["sha256"] == sha256_file(dest) and record["file"] == dest.name and record["task"] == "dqn"
    _, meta = read_state_dict(dest)
    assert meta["name"] == "dqn.test" and meta["metrics"]["eval_mean"] == 1.5 and meta["config"] == {"n_actions": 4}
    # the recording is not overwritten without --force
    again = runner.invoke(app, ["play-dqn", "--weights-file", str(report.final_weights), "--record", str(gif)])
    assert again.exit_code != 0 and "--force" in again.output


def test_play_with_bundled_weights_vs_random():
    from dlcli.weights import registry

    if registry.lookup("dqn.breakout") is None:
        pytest.skip("weights/dqn.breakout.safetensors is not bundled in this checkout")
    result = runner.invoke(app, ["play-dqn", "--episodes", "1", "--vs-random", "--json", "--quiet", "--seed", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["agent"]["policy"] == "dqn.breakout" and data["random"]["policy"] == "random"
    assert data["provenance"]["weights_sha256"]


def test_cli_unknown_game_did_you_mean():
    result = runner.invoke(app, ["play-dqn", "--env", "Breakot", "--weights-file", "x.safetensors"])
    assert result.exit_code != 0
    assert "did you mean 'Breakout'" in result.output
    result = runner.invoke(app, ["play-dqn", "train", "--env", "Pongg", "--out", "unused"])
    assert result.exit_code != 0 and "did you mean 'Pong'" in result.output


def test_cli_train_passes_options(monkeypatch, tmp_path):
    import dlcli.training.dqn as dqn

    seen = {}

    def fake_train(cfg, out, *, runtime, reporter, resume, force):
        seen.update(cfg=cfg, out=out, resume=resume, device=str(runtime.device))
        raise InputError("stop here")

    monkeypatch.setattr(dqn, "train_dqn", fake_train)
    result = runner.invoke(app, ["play-dqn", "train", "--env", "pong", "--steps", "5000", "--lr", "0.0002",
                                 "--buffer-size", "1000", "--learning-starts", "100", "--double", "--n-step", "3",
                                 "--out", str(tmp_path / "r"), "--device", "cpu", "--seed", "7"])
    assert result.exit_code != 0 and "stop here" in result.output
    cfg = seen["cfg"]
    assert (cfg.env, cfg.total_steps, cfg.learning_rate, cfg.buffer_size, cfg.learning_starts) == ("pong", 5000, 2e-4, 1000, 100)
    assert cfg.double and cfg.n_step == 3 and cfg.seed == 7 and not seen["resume"] and seen["device"] == "cpu"
    # --resume on a folder without a run is a clear error, before any training
    missing = runner.invoke(app, ["play-dqn", "train", "--resume", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no run to continue" in missing.output
    # CleanRL defaults when nothing is given
    from dlcli.training.dqn import DQNConfig

    d = DQNConfig()
    assert (d.learning_rate, d.buffer_size, d.gamma, d.target_update, d.batch_size, d.end_epsilon,
            d.exploration_fraction, d.learning_starts, d.train_freq) == (1e-4, 1_000_000, 0.99, 1000, 32, 0.01,
                                                                          0.10, 80_000, 4)


def test_render_without_display_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = runner.invoke(app, ["play-dqn", "--render", "--weights-file", str(tmp_path / "none.safetensors")])
    assert result.exit_code != 0 and "display" in result.output


def test_replay_rebuilds_exactly_what_the_agent_saw():
    """On a real training env (life losses, FIRE resets, frame-stack padding), every stack the
    buffer rebuilds equals the observation the agent acted on, and next_obs the one that followed."""
    env = atari.make_env("Breakout", training=True, seed=1)
    buf = ReplayBuffer(1000, seed=0)
    rng = np.random.default_rng(1)
    seen, following = [], []
    obs, _ = env.reset(seed=1)
    try:
        for _ in range(400):
            action = int(rng.integers(4))
            nxt, reward, terminated, truncated, _ = env.step(action)
            buf.add(obs, action, reward, terminated, truncated)
            seen.append(obs)
            following.append(None if terminated else nxt)
            obs = env.reset()[0] if (terminated or truncated) else nxt
    finally:
        env.close()
    assert sum(f is None for f in following) >= 2  # life losses happened
    idx = np.arange(len(seen) - 1)
    stacks = buf.frames[buf._stack_indices(idx)]
    nxt_stacks = buf.frames[buf._stack_indices(idx + 1)]
    for i in idx:
        np.testing.assert_array_equal(stacks[i], seen[i])
        if following[i] is not None:
            np.testing.assert_array_equal(nxt_stacks[i], following[i])


def test_periodic_evaluation_logs_a_game_strip_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason='tensorboard is not installed (pip install "dlcli[tensorboard]")')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dlcli.device import Runtime
    from dlcli.training.dqn import train_dqn

    out = tmp_path / "run"
    train_dqn(_tiny_config(total_steps=40, eval_every=40, eval_episodes=1), out, runtime=Runtime.create("cpu", "fp32"))
    acc = EventAccumulator(str(out), size_guidance={"images": 0})
    acc.Reload()
    (strip,) = acc.Images("eval/game")
    assert strip.step == 40 and strip.width == 8 * 160 and strip.height == 210
