"""`dl generate` (= `dl generate run`: sample a DCGAN) and `dl generate train DATA`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.config_options import RunOptions, TrainOptions
from dlcli.cli.app import Options, command, group
from dlcli.cli.commands._engine import engine_options, model_file_option, runtime_option


def register(app: typer.Typer) -> None:
    grp = group("generate", help="Draw new images with a DCGAN generator; train one with `train`.", default="run")
    # `dl generate` alone samples the default model (all its options have defaults).
    grp.info.no_args_is_help = False

    @command(grp, "run")
    def run(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Weights name (default dcgan.mnist; see `dl weights list --task generate`)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="A generator .safetensors written by `dl generate train`."),
        n: int = typer.Option(64, "--n", "-n", help="Number of samples in the grid."),
        out: Path = typer.Option(Path("grid.png"), "--out", "-o", help="Output image (with --interpolate: OUT's stem .gif and .png)."),
        interpolate: Optional[int] = typer.Option(None, "--interpolate", help="Walk through K random latent points: an animated GIF and a strip PNG."),
        frames: int = typer.Option(8, "--frames", help="Frames between two latent points of the walk."),
        ncols: Optional[int] = typer.Option(None, "--ncols", help="Grid columns (default: a square grid)."),
        force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
        model_file: Optional[Path] = model_file_option(),
        engine: Optional[str] = runtime_option(),
        *,
        opts: Options,
    ) -> None:
        """Sample a grid of new images from seeded noise (the same --seed gives the same grid)."""
        from dlcli import render
        from dlcli.tasks import generate as task

        opts = engine_options(opts, engine, model_file)
        rt, reporter = opts.start()
        seed = opts.seed if opts.seed is not None else 0
        result = task.generate(runtime=rt, model=model, weights_file=weights_file, n=n, seed=seed, out=out,
                               interpolate=interpolate, frames=frames, ncols=ncols, force=force,
                               offline=opts.offline, reporter=reporter, model_file=model_file, engine=engine)
        render.show(result, opts.json)

    from dlcli.training.configs import DCGANConfig

    @command(grp, "train", config=DCGANConfig, run_folder="runs/dcgan-DATA")
    def train(
        data: str = typer.Argument(..., help="mnist | fashion-mnist | a folder of images."),
        *,
        train: TrainOptions,
        run: RunOptions,
        opts: Options,
    ) -> None:
        """Train a DCGAN (generator and discriminator): per-epoch losses and sample grids,
        checkpoints (Ctrl-C saves one; continue with --resume DIR), a generator weights file."""
        from dlcli import render
        from dlcli.errors import InputError
        from dlcli.results import GenerateTrainResult, Provenance
        from dlcli.training import dcgan as trainer

        run.check()
        if run.resuming:
            cfg = trainer.load_run_config(run.folder)
            if "epochs" in train.given:
                cfg.epochs = train.values["epochs"]
            out_dir = run.folder
        else:
            folder_data = data not in trainer.DATASETS
            if folder_data and not Path(data).expanduser().is_dir():
                raise InputError(f"DATA {data!r} is neither mnist, fashion-mnist nor a folder of images")
            tag = data if not folder_data else Path(data).expanduser().resolve().name.lower().replace(".", "-") or "images"
            given = train.given
            cfg = train.build(
                DCGANConfig, data=data if not folder_data else str(Path(data).expanduser().resolve()),
                image_size=train.values["image_size"] if "image_size" in given else (64 if folder_data else 28),
                seed=opts.seed if opts.seed is not None else 0,
                name=train.values["name"] if "name" in given else f"dcgan.{tag.replace('-', '_')}")
            out_dir = run.out if run.out is not None else Path("runs") / f"dcgan-{tag}"
        cfg.offline = opts.offline
        rt, reporter = opts.start()
        reporter.message(f"training DCGAN on {cfg.data} ({cfg.image_size} px) on {rt.device} ({rt.dtype_name}) "
                         f"into {out_dir}")
        res = trainer.train_dcgan(cfg, out_dir, runtime=rt, reporter=reporter, resume=run.resuming, force=run.force)
        samples = sorted((out_dir / "samples").glob("epoch_*.png"))
        result = GenerateTrainResult(
            data=cfg.data, out_dir=res.out_dir, weights_file=res.weights_file, sha256=res.sha256,
            epochs=res.epochs_done, steps=res.steps, history=res.history, samples=samples,
            seconds=round(res.seconds, 1), resumed_from_step=res.resumed_from,
            provenance=Provenance.collect(rt, cfg.name, res.sha256),
        )
        render.show(result, opts.json)

    app.add_typer(grp)
