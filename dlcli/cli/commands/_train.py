"""What the train commands share: the device and process group, then (detect, segment) the
trainer call, registering the best weights under --name and rendering the report.
(A leading underscore: not a command module.)"""

from __future__ import annotations

from typing import Optional

import typer

from dlcli.cli.app import Options, command
from dlcli.cli.config_options import RunOptions, TrainOptions


def register_vision_train(grp: typer.Typer, task: str, config_cls: type, *, arch: str, what: str,
                          metric: str) -> None:
    """`dl detect train` / `dl segment train`: one declaration for both (options generated from
    the trainer's config, plus --name)."""

    def train(
        name: Optional[str] = typer.Option(None, "--name", help=f"Also store the best weights as this entry (e.g. {arch}.mine; --force replaces one)."),
        *,
        train: TrainOptions,
        run: RunOptions,
        opts: Options,
    ) -> None:
        train_vision(task, config_cls, train, run, name, opts)

    train.__doc__ = (f"Train {what} (progress, per-epoch {metric}, checkpoints; Ctrl-C saves, --resume continues; "
                     "DDP under torchrun).")
    command(grp, "train", config=config_cls, run_folder=f"runs/{task}")(train)


def train_vision(task: str, config_cls: type, train: TrainOptions, run: RunOptions, name: Optional[str],
                 opts: Options) -> None:
    """`dl detect train` / `dl segment train`: one body for both (they differ in their trainer)."""
    from dlcli import render
    from dlcli.device import Runtime
    from dlcli.progress import NullReporter, Reporter
    from dlcli.results import Provenance, VisionTrainReport
    from dlcli.tasks.detect import register_trained
    from dlcli.training import distributed

    run.check()
    seed = {"seed": opts.seed} if opts.seed is not None else ({} if run.resuming else {"seed": 0})
    # A resumed run keeps its own settings; only what is given on this command line changes.
    cfg = train.resumed(config_cls, run.folder, **seed) if run.resuming else train.build(config_cls, **seed)
    if task == "detect":
        from dlcli.training.detect import train_detector as trainer
    else:
        from dlcli.training.segment import train_segmenter as trainer
    dist = distributed.setup(opts.device)
    try:
        rt = Runtime.create(dist.device_spec(opts.device), opts.precision, opts.seed, opts.deterministic)
        reporter: Reporter = opts.reporter() if dist.is_main else NullReporter()  # only rank 0 talks
        for notice in rt.notices:
            reporter.message(notice)
        summary = trainer(cfg, run.folder, rt, resume=run.resuming, force=run.force, reporter=reporter, dist=dist)
        if not dist.is_main:
            return
        registered = register_trained(name, summary.best, task=task, force=run.force)
        report = VisionTrainReport(task=task, out=summary.out, best=summary.best, registered=registered,
                                   epochs=summary.epochs, metrics=summary.metrics, seconds=summary.seconds,
                                   provenance=Provenance.collect(rt, registered, None))
        render.show(report, opts.json, usage=f"dl {task} IMAGE")
    finally:
        dist.close()
