"""`--out DIR` of the eval commands: check the folder before the work, then say what was drawn (or
how to get pictures when matplotlib is missing). (A leading underscore: not a command module.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from dlcli.progress import Reporter


def check_pictures_dir(out: Optional[Path]) -> None:
    """Fail before evaluating, not after, when --out cannot hold the pictures."""
    if out is not None:
        from dlcli.atomic import check_output_dir

        check_output_dir(out)


def say_pictures(out: Optional[Path], written: Sequence[str], reporter: Reporter) -> None:
    if out is None:
        return
    from dlcli import plots

    if written:
        reporter.message(f"pictures in {out}: " + ", ".join(Path(p).name for p in written))
    elif not plots.available():
        reporter.message(plots.MISSING)


def dqn_scores_picture(out: Optional[Path], result: Any, reporter: Reporter) -> None:
    """scores.png of `dl play-dqn --out DIR`: the agent's per-game scores beside a random policy's."""
    if out is None:
        return
    from dlcli.evaluation import pictures

    scores = {f"agent ({result.agent.policy})": [e.score for e in result.agent.episodes]}
    if result.random is not None:
        scores["random"] = [e.score for e in result.random.episodes]
    say_pictures(out, [str(p) for p in pictures.scores(scores, out)], reporter)
