"""What `dl detect train` and `dl segment train` do after training: register the best weights
under --name, then render the report. (A leading underscore: not a command module.)"""

from __future__ import annotations

from typing import Any, Optional

from dlcli.cli.app import Options


def finish_vision_train(task: str, summary: Any, name: Optional[str], force: bool, rt: Any, opts: Options) -> None:
    from dlcli import render
    from dlcli.results import Provenance, VisionTrainReport
    from dlcli.tasks.detect import register_trained

    registered = register_trained(name, summary.best, task=task, force=force)
    report = VisionTrainReport(task=task, out=summary.out, best=summary.best, registered=registered,
                               epochs=summary.epochs, metrics=summary.metrics, seconds=summary.seconds,
                               provenance=Provenance.collect(rt, registered, None))
    if opts.json:
        render.emit_json(report.to_dict())
    else:
        render.render_vision_train(report, f"dl {task} IMAGE")
