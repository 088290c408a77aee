"""`dl play-dqn [--env GAME] [--weights NAME | --weights-file F]` (= `dl play-dqn run`) and
`dl play-dqn train --env GAME --steps N`: Deep Q-Networks on Atari (gymnasium + ale-py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command, group


def register(app: typer.Typer) -> None:
    grp = group("play-dqn", help="Play Atari with a Deep Q-Network (evaluation protocol, vs random, GIF); train one with `train`.",
                default="run")

    @command(grp, "run")
    def run(
        env: Optional[str] = typer.Option(None, "--env", "-e", help="Atari game: Breakout, ALE/Breakout-v5, breakout… (default: the game the weights were trained on)."),
        weights: Optional[str] = typer.Option(None, "--weights", "--model", "-m", help="Weights name (default dqn.breakout; see `dl weights list --task dqn`)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="A .safetensors file written by `dl play-dqn train`."),
        episodes: int = typer.Option(10, "--episodes", "-n", min=1, help="Full games to play."),
        epsilon: float = typer.Option(0.05, "--epsilon", help="Chance of a random action per step (evaluation protocol: 0.05)."),
        vs_random: bool = typer.Option(False, "--vs-random", help="Also play the same games with a uniformly random policy and compare."),
        record: Optional[Path] = typer.Option(None, "--record", help="Save the first game as an animated .gif (or .mp4 with imageio[ffmpeg])."),
        render: bool = typer.Option(False, "--render", help="Show the games in a window (needs a display)."),
        force: bool = typer.Option(False, "--force", help="Overwrite the --record file."),
        *,
        opts: Options,
    ) -> None:
        """Play full games with a trained agent and print per-game scores with mean and std."""
        from dlcli import render as rendering
        from dlcli.atomic import check_writable
        from dlcli.tasks import dqn as task

        if record is not None:
            check_writable(record, force)  # fail before playing, not after
        rt, reporter = opts.start()
        result = task.play(rt, game=env, weights=weights, weights_file=str(weights_file) if weights_file else None,
                           episodes=episodes, epsilon=epsilon, seed=opts.seed if opts.seed is not None else 0,
                           vs_random=vs_random, record=record, render=render, offline=opts.offline, reporter=reporter)
        if opts.json:
            rendering.emit_json(result.to_dict())
        else:
            rendering.render_dqn_play(result)

    @command(grp, "train")
    def train(
        env: str = typer.Option("Breakout", "--env", "-e", help="Atari game to learn."),
        steps: int = typer.Option(10_000_000, "--steps", "--total-steps", min=1, help="Agent steps (4 frames each)."),
        out: Path = typer.Option(Path("runs/dqn"), "--out", "-o", help="Run folder: checkpoint.pt, best/final.safetensors, metrics.jsonl."),
        lr: float = typer.Option(1e-4, "--lr", "--learning-rate", help="Adam learning rate."),
        buffer_size: int = typer.Option(1_000_000, "--buffer-size", min=16, help="Replay capacity in transitions (~7 KB each)."),
        gamma: float = typer.Option(0.99, "--gamma", help="Discount factor."),
        tau: float = typer.Option(1.0, "--tau", help="Target network update rate (1: hard copy)."),
        target_update: int = typer.Option(1000, "--target-update", min=1, help="Steps between target network updates."),
        batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Transitions per gradient step."),
        start_epsilon: float = typer.Option(1.0, "--start-epsilon", help="Exploration epsilon at the start."),
        end_epsilon: float = typer.Option(0.01, "--end-epsilon", help="Exploration epsilon after the decay."),
        exploration_fraction: float = typer.Option(0.10, "--exploration-fraction", help="Fraction of --steps over which epsilon decays linearly."),
        learning_starts: int = typer.Option(80_000, "--learning-starts", min=0, help="Steps of acting before the first gradient step."),
        train_freq: int = typer.Option(4, "--train-freq", min=1, help="Steps between gradient steps."),
        double: bool = typer.Option(False, "--double/--no-double", help="Double DQN targets instead of the Nature max target."),
        n_step: int = typer.Option(1, "--n-step", min=1, max=20, help="Multi-step returns (1: Nature DQN)."),
        eval_every: int = typer.Option(100_000, "--eval-every", min=0, help="Steps between evaluations (0: never)."),
        eval_episodes: int = typer.Option(5, "--eval-episodes", min=1, help="Full games per evaluation."),
        log_every: int = typer.Option(10_000, "--log-every", min=1, help="Steps between metric rows."),
        checkpoint_every: float = typer.Option(300.0, "--checkpoint-every", min=1.0, help="Seconds between checkpoints."),
        checkpoint_buffer: bool = typer.Option(False, "--checkpoint-buffer", help="Also save the replay buffer (large) so --resume continues exactly."),
        name: Optional[str] = typer.Option(None, "--name", help="Weights name written in the output files (default dqn.<game>)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
        *,
        opts: Options,
    ) -> None:
        """Train a DQN (target network, Huber loss, Adam, linear epsilon); defaults follow CleanRL/Nature."""
        from dlcli import render as rendering
        from dlcli.errors import InputError
        from dlcli.training.dqn import DQNConfig, train_dqn

        if name is not None and (not name.startswith("dqn.") or name == "dqn."):
            raise InputError(f"--name must look like dqn.TAG, got {name!r}")
        cfg = DQNConfig(
            env=env, total_steps=steps, learning_rate=lr, buffer_size=buffer_size, gamma=gamma, tau=tau,
            target_update=target_update, batch_size=batch_size, start_epsilon=start_epsilon,
            end_epsilon=end_epsilon, exploration_fraction=exploration_fraction, learning_starts=learning_starts,
            train_freq=train_freq, double=double, n_step=n_step, eval_every=eval_every,
            eval_episodes=eval_episodes, log_every=log_every, checkpoint_every=checkpoint_every,
            checkpoint_buffer=checkpoint_buffer, seed=opts.seed if opts.seed is not None else 1, name=name or "",
        )
        rt, reporter = opts.start()
        if resume:
            from dlcli.training.dqn import resume_config

            cfg, ignored = resume_config(out, cfg)
            if ignored:
                reporter.message("continuing with the run's own settings; ignored: " + ", ".join(ignored))
        reporter.message(f"training on {rt.device} ({rt.dtype_name})")
        report = train_dqn(cfg, out, runtime=rt, reporter=reporter, resume=resume)
        if opts.json:
            rendering.emit_json(report.to_dict())
        else:
            rendering.render_dqn_train(report)

    app.add_typer(grp)
