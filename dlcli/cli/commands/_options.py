"""Options that several task commands share, declared once so that their names, bounds and help
read the same in every command (the README's "Common options"). (A leading underscore keeps
command discovery from registering it.)"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.cli.app import Options
    from dlcli.device import Runtime
    from dlcli.progress import Reporter

# Bounds of the sizes a user gives, checked by the option parser before anything is allocated.
MAX_BATCH = 1024  # images per forward pass; larger batches only risk running out of memory
MAX_EVAL_COUNT = 100_000  # held-out scenes: the per-image results of an evaluation are kept in memory
TEST_SEED_HELP = "Scene world to evaluate on (default: the test seed, 2; training used 0, validation 1)."


def inputs_argument() -> Any:
    return typer.Argument(..., help="Image files, folders, globs, http(s) URLs, or - for stdin.")


def model_option(help: str) -> Any:
    return typer.Option(None, "--model", "-m", help=help)


def weights_file_option(written_by: str) -> Any:
    return typer.Option(None, "--weights-file", help=f"A .safetensors file written by `{written_by}`.")


def strict_option() -> Any:
    return typer.Option(False, "--strict", help="Stop at the first unreadable input instead of skipping it.")


def batch_size_option(default: int, help: str = "Images per forward pass.") -> Any:
    return typer.Option(default, "--batch-size", "-b", min=1, max=MAX_BATCH, help=help)


def count_option(help: str = "Scenes to evaluate on.") -> Any:
    return typer.Option(500, "--count", "-n", min=1, max=MAX_EVAL_COUNT, help=help)


def data_seed_option() -> Any:
    return typer.Option(None, "--data-seed", min=0, help=TEST_SEED_HELP)


def pictures_option(files: str) -> Any:
    return typer.Option(None, "--out", "-o", help=f"Folder for pictures: {files}.")


def run_eval(opts: Options, out: Optional[Path], evaluate: Callable[[Runtime, Reporter], Any]) -> None:
    """The body of every `eval` command: check --out before the work, evaluate, say which pictures
    were drawn, print the report."""
    from dlcli import render
    from dlcli.cli.commands._pictures import check_pictures_dir, say_pictures

    check_pictures_dir(out)
    rt, reporter = opts.start()
    report = evaluate(rt, reporter)
    say_pictures(out, report.pictures, reporter)
    render.show(report, opts.json)
