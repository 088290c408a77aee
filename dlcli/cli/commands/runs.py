"""`dl runs …`: look at training runs: list, show, plot (overlay runs), report (one HTML page)."""

from __future__ import annotations

from pathlib import Path

import typer

from dlcli.cli.app import Options, command
from dlcli.results import Line, RunShow, RunsList

runs_app = typer.Typer(name="runs", help="Training runs: list, show, plot (compare runs), report (an HTML page).",
                       no_args_is_help=True, rich_markup_mode="rich")


def register(app: typer.Typer) -> None:
    @command(runs_app, "list")
    def list_(folder: Path = typer.Argument(Path("runs"), help="Folder holding run folders (default runs/)."),
              *, opts: Options) -> None:
        """A table of runs: task, state (finished / interrupted / running / broken, with the reason),
        epochs or steps done, best metric, wall time, weights files."""
        from dlcli import render
        from dlcli.training import runs

        render.show(RunsList(str(folder), [r.to_dict() for r in runs.list_runs(folder)]), opts.json)

    @command(runs_app, "show")
    def show(run_folder: Path = typer.Argument(..., metavar="RUN", help="A run folder."), *, opts: Options) -> None:
        """One run: its state, config, per-epoch table and files."""
        from dlcli import render
        from dlcli.training import runs

        render.show(RunShow(runs.show(run_folder)), opts.json)

    @command(runs_app, "plot")
    def plot(
        run_folders: list[Path] = typer.Argument(..., metavar="RUN...", help="Run folders to overlay."),
        metric: str = typer.Option(..., "--metric", "-m", help="What to plot: a name as `dl runs show` prints it (val_map50, train_loss, test_accuracy) or SPLIT/KEY (train/loss)."),
        out: Path = typer.Option(Path("compare.png"), "--out", "-o", help="The PNG to write."),
        force: bool = typer.Option(False, "--force", help="Overwrite --out."),
        *,
        opts: Options,
    ) -> None:
        """One figure with one metric of several runs, one line per run (x: epochs, or steps)."""
        from dlcli import render
        from dlcli.atomic import check_writable
        from dlcli.training import runs

        check_writable(out, force)
        drawn = runs.plot(list(run_folders), metric, out)
        render.show(Line(f"wrote {out} ({metric} of {len(drawn['runs'])} runs by {drawn['x']})", drawn, remark=True),
                    opts.json, quiet=opts.quiet)

    @command(runs_app, "report")
    def report(
        run_folder: Path = typer.Argument(..., metavar="RUN", help="A run folder."),
        out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
        force: bool = typer.Option(False, "--force", help="Overwrite --out."),
        *,
        opts: Options,
    ) -> None:
        """One self-contained HTML page (pictures inlined): state, curves, evaluation pictures,
        per-epoch table, config, files with SHA-256 and provenance. Mail it to a colleague."""
        from dlcli import render
        from dlcli.atomic import check_writable
        from dlcli.training import runs

        check_writable(out, force)
        made = runs.report(run_folder, out)
        render.show(Line(f"wrote {out} ({made['bytes'] // 1024} KiB; open it in a browser)", made, remark=True),
                    opts.json, quiet=opts.quiet)

    app.add_typer(runs_app)
