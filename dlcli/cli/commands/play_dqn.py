"""`dl play-dqn [--env GAME] [--weights NAME | --weights-file F]` (= `dl play-dqn run`) and
`dl play-dqn train --env GAME --steps N`: Deep Q-Networks on Atari (gymnasium + ale-py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command, group
from dlcli.cli.config_options import RunOptions, TrainOptions


def register(app: typer.Typer) -> None:
    grp = group("play-dqn", help="Play Atari with a Deep Q-Network (evaluation protocol, vs random, GIF/MP4); train one with `train`.",
                default="run")

    @command(grp, "run", renamed={"--weights": "--model"})
    def run(
        env: Optional[str] = typer.Option(None, "--env", "-e", help="Atari game: Breakout, ALE/Breakout-v5, breakout… (default: the game the weights were trained on)."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Weights name (default dqn.breakout; see `dl weights list --task dqn`)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="A .safetensors file written by `dl play-dqn train`."),
        episodes: int = typer.Option(10, "--episodes", "-n", min=1, help="Full games to play."),
        epsilon: float = typer.Option(0.05, "--epsilon", help="Chance of a random action per step (evaluation protocol: 0.05)."),
        vs_random: bool = typer.Option(False, "--vs-random", help="Also play the same games with a uniformly random policy and compare."),
        record: Optional[Path] = typer.Option(None, "--record", help="Save the first game as an animated .gif, or an H.264 .mp4 (needs dlcli[video])."),
        render: bool = typer.Option(False, "--render", help="Show the games in a window (needs a display)."),
        force: bool = typer.Option(False, "--force", help="Overwrite the --record file."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for scores.png: the score of every game (and of the random policy's with --vs-random)."),
        *,
        opts: Options,
    ) -> None:
        """Play full games with a trained agent and print per-game scores with mean and std."""
        from dlcli import render as rendering
        from dlcli.atomic import check_writable
        from dlcli.cli.commands._pictures import check_pictures_dir, dqn_scores_picture
        from dlcli.tasks import dqn as task

        if record is not None:
            check_writable(record, force)  # fail before playing, not after
        check_pictures_dir(out)
        rt, reporter = opts.start()
        result = task.play(rt, game=env, weights=model, weights_file=str(weights_file) if weights_file else None,
                           episodes=episodes, epsilon=epsilon, seed=opts.seed if opts.seed is not None else 0,
                           vs_random=vs_random, record=record, render=render, offline=opts.offline, reporter=reporter)
        dqn_scores_picture(out, result, reporter)
        rendering.show(result, opts.json)

    from dlcli.training.configs import DQNConfig

    @command(grp, "train", config=DQNConfig, run_folder="runs/dqn")
    def train(
        *,
        train: TrainOptions,
        run: RunOptions,
        opts: Options,
    ) -> None:
        """Train a DQN (target network, Huber loss, Adam, linear epsilon); defaults follow CleanRL/Nature.
        Ctrl-C saves a checkpoint; --resume DIR continues (its own settings; --steps may grow)."""
        from dlcli import render as rendering
        from dlcli.errors import InputError
        from dlcli.training.dqn import train_dqn

        run.check()
        name = train.values["name"]
        if name and (not name.startswith("dqn.") or name == "dqn."):
            raise InputError(f"--name must look like dqn.TAG, got {name!r}")
        cfg = train.for_run(DQNConfig, run, opts.seed, default_seed=1)
        rt, reporter = opts.start()
        if run.resuming:
            from dlcli.training.dqn import resume_config

            cfg, ignored = resume_config(run.folder, cfg)
            if ignored:
                reporter.message("continuing with the run's own settings; ignored: " + ", ".join(ignored))
        reporter.message(f"training on {rt.device} ({rt.dtype_name})")
        report = train_dqn(cfg, run.folder, runtime=rt, reporter=reporter, resume=run.resuming, force=run.force)
        rendering.show(report, opts.json)

    app.add_typer(grp)
