"""Scoring a DQN agent with the evaluation protocol (Mnih et al. 2015, with the full-game scoring of
Machado et al. 2018): epsilon-greedy with epsilon 0.05, up to 30 random no-ops at the start, full
games (all lives) of at most 108,000 frames, raw (unclipped) scores. A random policy plays under the
same protocol: the baseline that scores are compared against."""

from __future__ import annotations

import random as _random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from dlcli.progress import NullReporter, Reporter

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime

EVAL_EPSILON = 0.05
PROTOCOL = (
    "epsilon 0.05, up to 30 random no-ops at start, full game (all lives), "
    "at most 108,000 frames (30 min), frame skip 4, no sticky actions, raw scores (no clipping)"
)


@dataclass
class EpisodeOutcome:
    score: float
    steps: int
    seconds: float
    frames: list[Any] = field(default_factory=list)


def greedy_policy(model: Any, runtime: Runtime) -> Callable[[Any], int]:
    """obs (4, 84, 84) uint8 -> argmax-Q action, run through the device manager."""
    import torch

    def act(obs: Any) -> int:
        x = runtime.to(torch.from_numpy(obs).unsqueeze(0))
        with runtime.inference():
            return int(model(x).argmax(dim=1).item())

    return act


def play_episode(env: Any, policy: Callable[[Any], int] | None, *, epsilon: float, rng: _random.Random,
                 seed: int | None = None, record: bool = False, render: Callable[[], None] | None = None) -> EpisodeOutcome:
    """Play one full game; `policy` None plays uniformly random actions.

    The score is the raw game score from the statistics wrapper under all others, so it is the
    same whichever training-time wrappers are in the stack."""
    n = env.action_space.n
    obs, info = env.reset(seed=seed)
    frames: list[Any] = []
    t0 = time.perf_counter()
    steps = 0
    while True:
        if record:
            frames.append(env.unwrapped.render() if env.unwrapped.render_mode == "rgb_array" else None)
        if render is not None:
            render()
        if policy is None or rng.random() < epsilon:
            action = rng.randrange(n)
        else:
            action = policy(obs)
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        if "episode" in info:
            score = float(info["episode"]["r"])
            break
        if terminated or truncated:  # a wrapper ended it without a game over (not with eval envs)
            score = float("nan")
            break
    return EpisodeOutcome(score, steps, time.perf_counter() - t0, [f for f in frames if f is not None])


def evaluate(model: Any, runtime: Runtime, game: str, episodes: int, *, epsilon: float = EVAL_EPSILON,
             seed: int = 0, random_policy: bool = False, reporter: Reporter | None = None,
             record_first: bool = False) -> list[EpisodeOutcome]:
    """Play `episodes` full games with the evaluation protocol (the model's greedy policy with
    epsilon-random actions, or a random policy)."""
    from dlcli.data.atari import make_env

    reporter = reporter or NullReporter()
    env = make_env(game, training=False, seed=seed, render_mode="rgb_array" if record_first else None)
    policy = None if random_policy else greedy_policy(model, runtime)
    rng = _random.Random(seed)
    out: list[EpisodeOutcome] = []
    try:
        for ep in range(episodes):
            outcome = play_episode(env, policy, epsilon=epsilon, rng=rng, seed=seed + ep,
                                   record=record_first and ep == 0)
            out.append(outcome)
            reporter.advance(1, score=outcome.score)
    finally:
        env.close()
    return out
