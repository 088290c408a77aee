"""DQN task: build the Q-network from its weights entry and play Atari games with it.

The evaluation protocol (Mnih et al. 2015, with the full-game scoring of Machado et al. 2018):
epsilon-greedy with epsilon 0.05, up to 30 random no-ops at the start, full games (all lives) of at
most 108,000 frames, raw (unclipped) scores. `random` plays uniformly random actions under the same
protocol: the baseline the issue's "5x random" target is measured against.
"""

from __future__ import annotations

import random as _random
import time
from typing import TYPE_CHECKING, Any, Callable

from dlcli.evaluation.dqn import EVAL_EPSILON, PROTOCOL, EpisodeOutcome, evaluate, greedy_policy, play_episode  # noqa: F401  (re-exported for the CLI)
from dlcli.progress import NullReporter, Reporter
from dlcli.weights.presets import Preset, register_preset
from dlcli.weights.registry import register_arch
from dlcli.weights.spec import Arch

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import DQNScores
    from dlcli.results import DQNPlayResult
    from dlcli.device import Runtime

def _build(n_actions: int = 4, frames: int = 4) -> Any:
    from dlcli.models.qnetwork import QNetwork

    return QNetwork(n_actions=n_actions, frames=frames)


register_arch(Arch(
    "dqn", "dqn", _build,
    description="Nature DQN Q-network (Mnih et al. 2015): 4x84x84 grey frames -> Q-value per action",
    default_config={"n_actions": 4},
))


def _atari_frame(spec: Any, args: dict[str, Any]) -> Callable[[Any], Any]:
    """One screen -> the (1, 84, 84) uint8 grey frame the Q-network stacks (the env wrappers do
    this during play; the preset describes it for `dl weights info` and for single images)."""
    size = int(args.get("screen", 84))

    def transform(image: Any) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        grey = image.convert("L").resize((size, size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(grey, dtype=np.uint8).copy()).unsqueeze(0)

    return transform


register_preset(Preset("atari", _atari_frame, mode="L",
                       description="Atari screen -> 84x84 grey uint8 frame (4 stacked, frame skip 4 in the env)"))


# --- playing with a trained agent (dl play-dqn) ------------------------------------------------


def load_agent(runtime: Runtime, *, weights: str | None = None, weights_file: str | None = None,
               offline: bool = False, reporter: Reporter | None = None) -> Any:
    """The Q-network of a dqn weights entry (or file), placed by the device manager."""
    from dlcli.weights.loader import load_model

    import dataclasses

    loaded = load_model(weights, task="dqn", file=weights_file, offline=offline, reporter=reporter)
    return dataclasses.replace(loaded, model=runtime.place(loaded.model))


def weights_game(spec: Any) -> str | None:
    """The game a dqn weights entry was trained on (its extra or preprocess_args name it)."""
    return spec.extra.get("env") or spec.preprocess_args.get("env")


def _summary(policy: str, outcomes: list[EpisodeOutcome]) -> DQNScores:
    import numpy as np

    from dlcli.results import DQNEpisode, DQNScores

    scores = np.array([o.score for o in outcomes], dtype=np.float64)
    return DQNScores(
        policy=policy,
        episodes=tuple(DQNEpisode(i + 1, o.score, o.steps, round(o.seconds, 3)) for i, o in enumerate(outcomes)),
        mean=float(scores.mean()), std=float(scores.std()), min=float(scores.min()), max=float(scores.max()),
    )


def write_recording(frames: list[Any], path: Any, *, fps: int = 15) -> None:
    """RGB frames -> an animated GIF (Pillow) or a video (.mp4 H.264; .mov .mkv .avi .webm) through
    PyAV (the `video` extra), written atomically."""
    from pathlib import Path

    from dlcli.atomic import atomic_target
    from dlcli.errors import InputError
    from dlcli import video

    path = Path(path)
    suffix = path.suffix.lower()
    if not frames:
        raise InputError("nothing to record: the episode produced no frames")
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        with atomic_target(path) as tmp:
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=int(1000 / fps), loop=0, optimize=False)
    elif video.is_video(path):
        video.write_video(frames, path, fps=fps, force=True)  # --force was checked before playing
    else:
        raise InputError(f"--record wants a .gif or .mp4 file, not {path.name!r}")


def check_record_path(path: Any) -> None:
    """Refuse a --record name we cannot write (or a video without PyAV) before any game is played."""
    from pathlib import Path

    from dlcli import video
    from dlcli.errors import InputError

    name = Path(path)
    if video.is_video(name):
        video.require_av()
    elif name.suffix.lower() != ".gif":
        raise InputError(f"--record wants a .gif or .mp4 file, not {name.name!r}")


def play(runtime: Runtime, *, game: str | None = None, weights: str | None = None, weights_file: str | None = None,
         episodes: int = 10, epsilon: float = EVAL_EPSILON, seed: int = 0, vs_random: bool = False,
         record: Any = None, render: bool = False, offline: bool = False,
         reporter: Reporter | None = None) -> DQNPlayResult:
    """Play `episodes` full games with a trained agent under the evaluation protocol (and the
    same number with a random policy when `vs_random`); optionally record the first game."""
    import os
    import sys

    from dlcli.data.atari import game_title, make_env, resolve_game
    from dlcli.errors import InputError
    from dlcli.results import DQNPlayResult, Provenance

    reporter = reporter or NullReporter()
    if episodes < 1:
        raise InputError(f"--episodes must be at least 1, got {episodes}")
    if not 0 <= epsilon <= 1:
        raise InputError(f"--epsilon must be in [0, 1], got {epsilon}")
    if render and record is not None:
        raise InputError("give either --render or --record, not both")
    if render and sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise InputError("--render needs a display (DISPLAY is not set); use --record out.gif instead")

    if record is not None:
        check_record_path(record)
    asked = resolve_game(game) if game else None  # a wrong name fails before any loading
    agent = load_agent(runtime, weights=weights, weights_file=weights_file, offline=offline, reporter=reporter)
    trained_on = weights_game(agent.spec)
    env_id = asked or (trained_on and resolve_game(trained_on))
    if not env_id:
        raise InputError(f"weights {agent.spec.name!r} do not name their game; pass --env GAME")
    model = agent.model
    env = make_env(env_id, training=False, seed=seed,
                   render_mode="human" if render else ("rgb_array" if record is not None else None))
    n_actions = int(env.action_space.n)
    if model.n_actions != n_actions:
        env.close()
        raise InputError(f"{agent.spec.name} has {model.n_actions} actions but {game_title(env_id)} has {n_actions}; "
                         f"it was trained on {trained_on or 'another game'}")
    if trained_on and resolve_game(trained_on) != env_id:
        reporter.message(f"note: {agent.spec.name} was trained on {game_title(resolve_game(trained_on))}, "
                         f"playing {game_title(env_id)}")
    reporter.message(f"evaluation protocol: {PROTOCOL.replace('epsilon 0.05', f'epsilon {epsilon:g}')}")
    policy = greedy_policy(model, runtime)
    t0 = time.perf_counter()
    rng = _random.Random(seed)
    agent_runs: list[EpisodeOutcome] = []
    reporter.start(f"{agent.spec.name} playing {game_title(env_id)}", total=episodes, unit="games")
    try:
        for ep in range(episodes):
            out = play_episode(env, policy, epsilon=epsilon, rng=rng, seed=seed + ep,
                               record=record is not None and ep == 0)
            agent_runs.append(out)
            reporter.advance(1, score=out.score)
    finally:
        reporter.finish()
        env.close()
    recording = None
    if record is not None:
        write_recording(agent_runs[0].frames, record)
        recording = str(record)
        agent_runs[0].frames = []
    random_scores = None
    if vs_random:
        reporter.start(f"random policy playing {game_title(env_id)}", total=episodes, unit="games")
        try:
            # Same seeds: the random policy meets the same no-op starts as the agent.
            random_runs = evaluate(None, runtime, env_id, episodes, epsilon=epsilon, seed=seed,
                                   random_policy=True, reporter=reporter)
        finally:
            reporter.finish()
        random_scores = _summary("random", random_runs)
    agent_scores = _summary(agent.spec.name, agent_runs)
    ratio = None
    if random_scores is not None and random_scores.mean > 0:
        ratio = agent_scores.mean / random_scores.mean
    return DQNPlayResult(
        env=env_id, game=game_title(env_id), protocol=PROTOCOL.replace("epsilon 0.05", f"epsilon {epsilon:g}"),
        epsilon=epsilon, seed=seed, agent=agent_scores, random=random_scores, ratio_vs_random=ratio,
        recording=recording, seconds=round(time.perf_counter() - t0, 2),
        provenance=Provenance.collect(runtime, agent.spec.name, agent.sha256),
    )
