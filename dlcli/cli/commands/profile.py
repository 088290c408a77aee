"""`dl profile MODEL`: time share per layer type of a forward pass (the book's figure 8-14)."""

from __future__ import annotations

from typing import Optional

import typer

from dlcli.cli.app import Options, command


def register(app: typer.Typer) -> None:
    @command(app, "profile")
    def profile(
        model: str = typer.Argument(..., help="An architecture or weights name (alexnet, vgg16, resnet50.imagenet…)."),
        batch_size: int = typer.Option(1, "--batch-size", "-b", min=1, help="Images per forward pass."),
        input_size: Optional[int] = typer.Option(None, "--input-size", help="Square input side (default: the entry's preprocessing, e.g. 224)."),
        warmup: int = typer.Option(3, "--warmup", min=0, help="Untimed passes first (allocators, cuDNN autotuning, caches)."),
        repeats: int = typer.Option(10, "--repeats", min=1, help="Timed passes."),
        *,
        opts: Options,
    ) -> None:
        """Where a forward pass spends its time: conv, pool, fc, norm, activation, other.

        Random weights (time does not depend on their values); --device and --precision apply."""
        from dlcli import render
        from dlcli.tasks.profile import profile as run_profile

        rt, reporter = opts.start()
        reporter.start(f"profiling {model} on {rt.device} ({rt.dtype_name})")
        try:
            report = run_profile(model, rt, batch_size=batch_size, input_size=input_size, warmup=warmup, repeats=repeats)
        finally:
            reporter.finish()
        render.show(report, opts.json)
