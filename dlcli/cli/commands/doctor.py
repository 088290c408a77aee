"""`dl doctor`: one report of what this machine offers dlcli."""

from __future__ import annotations

import typer

from dlcli.cli.app import Options, command


def register(app: typer.Typer) -> None:
    @command(app, "doctor", help="Check versions, devices (with a tiny matmul), fp16/bf16, cache, weights and Atari ROMs.")
    def doctor(
        no_verify: bool = typer.Option(False, "--no-verify", help="Do not re-hash weights files (faster)."),
        *,
        opts: Options,
    ) -> None:
        from dlcli import doctor as doc
        from dlcli import render

        report = doc.run(verify=not no_verify)
        render.show(report, opts.json)
        if not report.healthy:
            raise doc.problems_error(report)
