"""What the train commands share: the device and process group, then (detect, segment) the
trainer call, registering the best weights under --name and rendering the report.
(A leading underscore: not a command module.)"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional

import typer

from dlcli.cli.app import Options, command
from dlcli.cli.config_options import RunOptions, TrainOptions


if TYPE_CHECKING:
    from dlcli.device import Runtime
    from dlcli.progress import Reporter
    from dlcli.training.distributed import Dist


@contextmanager
def distributed_session(opts: Options) -> Iterator[tuple["Dist", "Runtime", "Reporter"]]:
    """The process group (a no-op without torchrun), this rank's device manager and a reporter
    that only rank 0 uses (the others stay silent); the group is closed however the body ends."""
    from dlcli.device import Runtime
    from dlcli.progress import NullReporter
    from dlcli.training import distributed

    dist = distributed.setup(opts.device)
    try:
        rt = Runtime.create(dist.device_spec(opts.device), opts.precision, opts.seed, opts.deterministic)
        reporter = opts.reporter() if dist.is_main else NullReporter()
        for notice in rt.notices:
            reporter.message(notice)
        yield dist, rt, reporter
    finally:
        dist.close()


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
    from dlcli.results import Provenance, VisionTrainReport
    from dlcli.tasks.detect import register_trained

    run.check()
    # A resumed run keeps its own settings; only what is given on this command line changes.
    cfg = train.for_run(config_cls, run, opts.seed)
    if task == "detect":
        from dlcli.training.detect import train_detector as trainer
    else:
        from dlcli.training.segment import train_segmenter as trainer
    with distributed_session(opts) as (dist, rt, reporter):
        summary = trainer(cfg, run.folder, rt, resume=run.resuming, force=run.force, reporter=reporter, dist=dist)
        if not dist.is_main:
            return
        registered = register_trained(name, summary.best, task=task, force=run.force)
        report = VisionTrainReport(task=task, out=summary.out, best=summary.best, registered=registered,
                                   epochs=summary.epochs, metrics=summary.metrics, seconds=summary.seconds,
                                   provenance=Provenance.collect(rt, registered, None))
        render.show(report, opts.json, usage=f"dl {task} IMAGE")
