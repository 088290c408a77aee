"""How fast DQN runs here: environment steps/s alone (Breakout, full preprocessing, random
actions), and training steps/s (env + epsilon-greedy acting + one gradient step every 4 steps,
batch 32, Nature CNN). Prints a table and the ratio training/env-only.

    python benchmarks/dqn_speed.py [--env Breakout] [--steps 2000] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path


def env_speed(game: str, steps: int) -> float:
    from dlcli import catalog
    from dlcli.data.atari import make_env
    catalog.load()  # the registry's names (the registry itself imports no task)

    env = make_env(game, training=True, seed=0)
    env.reset(seed=0)
    n = env.action_space.n
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(random.randrange(n))
        if terminated or truncated:
            env.reset()
    dt = time.perf_counter() - t0
    env.close()
    return steps / dt


def train_speed(game: str, steps: int, device: str, learning_starts: int) -> float:
    from dlcli.device import Runtime
    from dlcli.training.dqn import DQNConfig, train_dqn

    rt = Runtime.create(device, "fp32", seed=0)
    # Learning starts early and epsilon is already low, so nearly every step acts with the network
    # and every 4th step trains: the steady state of a long run.
    cfg = DQNConfig(env=game, total_steps=learning_starts + steps, buffer_size=max(10_000, steps * 2),
                    learning_starts=learning_starts, exploration_fraction=0.01, eval_every=0,
                    log_every=learning_starts + steps, checkpoint_every=1e9, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_dqn(cfg, Path(tmp) / "run", runtime=rt)
        total = time.perf_counter() - t0
    # Subtract the warm-up steps at the env-only rate measured separately by the caller.
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Breakout")
    p.add_argument("--steps", type=int, default=2000, help="timed steps of each kind")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    warm = 256
    env_sps = env_speed(args.env, args.steps)
    total = train_speed(args.env, args.steps, args.device, warm)
    train_sps = args.steps / max(total - warm / env_sps, 1e-9)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, game {args.env}")
    print(f"{'what':<40}{'steps/s':>12}")
    print(f"{'environment only (preprocessed)':<40}{env_sps:>12.1f}")
    print(f"{'training (env + act + update every 4)':<40}{train_sps:>12.1f}")
    print(f"training / environment: {train_sps / env_sps:.3f}")


if __name__ == "__main__":
    main()
