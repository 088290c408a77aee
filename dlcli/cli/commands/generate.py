"""`dl generate` (= `dl generate run`: sample a DCGAN) and `dl generate train DATA`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

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
        if opts.json:
            render.emit_json(result.to_dict())
        else:
            render.render_generate(result)

    @command(grp, "train")
    def train(
        data: str = typer.Argument(..., help="mnist | fashion-mnist | a folder of images."),
        data_dir: Optional[Path] = typer.Option(None, "--data", help="Folder with the MNIST/Fashion-MNIST IDX files (default: $DL_DATA, the cache, or a download for mnist; the Debian package's folder for fashion-mnist)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder: checkpoint.pt, samples/, generator.safetensors (default runs/dcgan-DATA)."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs in all (default 5; with --resume, the run's own unless given)."),
        batch_size: int = typer.Option(128, "--batch-size", "-b", min=2),
        lr: float = typer.Option(2e-4, "--lr", help="Adam learning rate of G (and of D unless --lr-d)."),
        lr_d: Optional[float] = typer.Option(None, "--lr-d", help="D's learning rate (TTUR: e.g. --lr 1e-4 --lr-d 4e-4)."),
        beta1: float = typer.Option(0.5, "--beta1", help="Adam beta1 (the paper's 0.5; 0 with --loss hinge as in SAGAN)."),
        beta2: float = typer.Option(0.999, "--beta2", help="Adam beta2."),
        lr_schedule: str = typer.Option("constant", "--lr-schedule", help="constant | linear (both rates fall to 0 by the last step)."),
        loss: str = typer.Option("bce", "--loss", help="bce (the paper's, non-saturating G loss) | hinge."),
        d_norm: str = typer.Option("batch", "--d-norm", help="D's normalisation: batch (the paper) | spectral."),
        label_smoothing: float = typer.Option(0.1, "--label-smoothing", min=0.0, max=0.5, help="Real targets are 1 - this (bce only)."),
        init_from: Optional[str] = typer.Option(None, "--init-from", help="Start G from these generator weights (a name, e.g. dcgan.mnist) instead of random."),
        image_size: Optional[int] = typer.Option(None, "--image-size", help="28 | 32 | 64 (default 28 for MNIST sets, 64 for folders)."),
        channels: Optional[int] = typer.Option(None, "--channels", help="1 | 3 (default 1 for MNIST sets, 3 for folders)."),
        width: int = typer.Option(64, "--width", help="Channels of G's last hidden layer; deeper layers double it."),
        latent_dim: int = typer.Option(100, "--latent-dim"),
        ema: float = typer.Option(0.999, "--ema", min=0.0, max=0.99999, help="Decay of the moving average of G's weights that is saved (0: save G as trained)."),
        checkpoint_every: int = typer.Option(200, "--checkpoint-every", min=1, help="Steps between checkpoints."),
        limit: Optional[int] = typer.Option(None, "--limit", min=2, help="Train on the first N images only (quick trials)."),
        name: Optional[str] = typer.Option(None, "--name", help="Weights name recorded in the output (default dcgan.DATA)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder (its options are reused)."),
        force: bool = typer.Option(False, "--force", help="Train into a --out folder that already holds a run."),
        *,
        opts: Options,
    ) -> None:
        """Train a DCGAN (generator and discriminator): per-epoch losses and sample grids,
        checkpoints (Ctrl-C saves one; continue with --resume), a generator weights file."""
        from dlcli import render
        from dlcli.errors import InputError
        from dlcli.results import GenerateTrainResult, Provenance
        from dlcli.training import dcgan as trainer

        if resume is not None:
            cfg = trainer.load_run_config(resume)
            if epochs is not None:
                cfg.epochs = epochs
            out_dir = Path(out) if out is not None else Path(resume)
        else:
            folder_data = data not in trainer.DATASETS
            if folder_data and not Path(data).expanduser().is_dir():
                raise InputError(f"DATA {data!r} is neither mnist, fashion-mnist nor a folder of images")
            tag = data if not folder_data else Path(data).expanduser().resolve().name.lower().replace(".", "-") or "images"
            cfg = trainer.DCGANConfig(
                data=data if not folder_data else str(Path(data).expanduser().resolve()),
                data_dir=str(data_dir) if data_dir is not None else None,
                epochs=epochs if epochs is not None else 5, batch_size=batch_size, lr=lr, lr_d=lr_d,
                beta1=beta1, beta2=beta2, lr_schedule=lr_schedule, loss=loss, d_norm=d_norm,
                label_smoothing=label_smoothing, init_from=init_from,
                latent_dim=latent_dim, width=width, ema=ema,
                image_size=image_size if image_size is not None else (64 if folder_data else 28),
                channels=channels, checkpoint_every=checkpoint_every, limit=limit,
                seed=opts.seed if opts.seed is not None else 0, name=name or f"dcgan.{tag.replace('-', '_')}",
            )
            out_dir = Path(out) if out is not None else Path("runs") / f"dcgan-{tag}"
            if (out_dir / "checkpoint.pt").exists() and not force:
                raise InputError(f"{out_dir} already holds a run; continue it with --resume {out_dir}, "
                                 "or pass --force to start over there")
        cfg.offline = opts.offline
        rt, reporter = opts.start()
        reporter.message(f"training DCGAN on {cfg.data} ({cfg.image_size} px) on {rt.device} ({rt.dtype_name}) "
                         f"into {out_dir}")
        res = trainer.train_dcgan(cfg, out_dir, runtime=rt, reporter=reporter, resume=resume)
        samples = sorted((out_dir / "samples").glob("epoch_*.png"))
        result = GenerateTrainResult(
            data=cfg.data, out_dir=res.out_dir, weights_file=res.weights_file, sha256=res.sha256,
            epochs=res.epochs_done, steps=res.steps, history=res.history, samples=samples,
            seconds=round(res.seconds, 1), resumed_from_step=res.resumed_from,
            provenance=Provenance.collect(rt, cfg.name, res.sha256),
        )
        if opts.json:
            render.emit_json(result.to_dict())
        else:
            render.render_generate_train(result)

    app.add_typer(grp)
