"""`dl summary MODEL`: the layer table of an architecture (shapes, parameters, MACs, receptive field)."""

from __future__ import annotations

from typing import Optional

import typer

from dlcli.cli.app import Options, command


def register(app: typer.Typer) -> None:
    @command(app, "summary")
    def summary(
        model: str = typer.Argument(..., help="An architecture or weights name (vgg16, resnet50.imagenet, deepconvnet.mnist…)."),
        input_size: Optional[int] = typer.Option(None, "--input-size", help="Square input side (default: what the entry's preprocessing makes, e.g. 224)."),
        channels: Optional[int] = typer.Option(None, "--channels", help="Input channels (default: from the entry's preprocessing)."),
        *,
        opts: Options,
    ) -> None:
        """Per layer: output shape, parameters, multiply-accumulates, receptive field; totals; and
        why stacks of 3x3 convolutions pay (the book's section 8.1.3). No weights are downloaded."""
        from dlcli import render
        from dlcli.tasks.summary import summarize

        result = summarize(model, input_size=input_size, channels=channels)
        render.show(result, opts.json)
