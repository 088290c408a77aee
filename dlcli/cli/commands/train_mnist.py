"""`dl train-mnist`: train (or evaluate) the book's DeepConvNet on MNIST.

Under `torchrun --nproc_per_node N -m dlcli train-mnist ...` it trains with DDP; only rank 0
prints and writes files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command
from dlcli.cli.config_options import RunOptions, TrainOptions


def register(app: typer.Typer) -> None:
    from dlcli.training.configs import MnistTrainConfig

    @command(app, "train-mnist", config=MnistTrainConfig, run_folder="runs/train-mnist", renamed={"--weights": "--model"})
    def train_mnist(
        data: Optional[Path] = typer.Option(None, "--data", help="Folder with the four MNIST IDX files (plain or .gz; also torchvision's MNIST/raw layout). Default: $DL_DATA, else download (online)."),
        gpu: bool = typer.Option(False, "--gpu", help="Train on the GPU (same as --device cuda); fails when there is none."),
        evaluate: bool = typer.Option(False, "--evaluate", help="Only evaluate weights on the test set (with --model or --weights-file); --out DIR saves misclassified.png there."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="With --evaluate: a weights name (default deepconvnet.mnist)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="With --evaluate: a .safetensors file written by train-mnist."),
        *,
        train: TrainOptions,
        run: RunOptions,
        opts: Options,
    ) -> None:
        """Train the book's deep CNN on MNIST: a progress bar and a table row per epoch, then the
        test accuracy, confusion matrix, most-confused pairs and misclassified digits.

        The book's recipe is the default (Adam 0.001, batch 100, 20 epochs, 99.38%); --recipe fast
        reaches that in 5 epochs, --budget 5m trains for a wall-clock time; the bundled
        deepconvnet.mnist is --recipe best (99.65%)."""
        import dataclasses
        import time

        from dlcli import render
        from dlcli.errors import InputError
        from dlcli.results import MnistEvalReport, MnistTrainReport, Provenance

        if gpu:
            if opts.device not in ("auto", "cuda", "gpu") and not opts.device.startswith("cuda"):
                raise InputError(f"--gpu conflicts with --device {opts.device}")
            opts = dataclasses.replace(opts, device=opts.device if opts.device.startswith("cuda") else "cuda")
        if model and weights_file:
            raise InputError("give either --model NAME or --weights-file FILE, not both")
        if (model or weights_file) and not evaluate:
            raise InputError("--model/--weights-file go with --evaluate (training always starts from scratch or --resume)")

        from dlcli.data.mnist import find_mnist
        from dlcli.device import Runtime
        from dlcli.progress import NullReporter
        from dlcli.training import distributed

        dist = distributed.setup(opts.device)
        try:
            rt = Runtime.create(dist.device_spec(opts.device), opts.precision, opts.seed, opts.deterministic,
                                training=not evaluate)
            reporter = opts.reporter() if dist.is_main else NullReporter()  # only rank 0 talks
            for notice in rt.notices:
                reporter.message(notice)
            data_dir = find_mnist(data, offline=opts.offline, reporter=reporter)

            if evaluate:
                from dlcli.evaluation import mnist as evaluator
                from dlcli.weights import loader

                lw = loader.load_model(None if weights_file else (model or "deepconvnet.mnist"), task="classify",
                                       file=weights_file, offline=opts.offline, reporter=reporter)
                if lw.spec.arch != "deepconvnet":
                    raise InputError(f"{lw.spec.name} is a {lw.spec.arch}, not a deepconvnet; train-mnist evaluates digit models")
                reporter.message(f"evaluating {lw.spec.name} on the MNIST test set ({rt.device}, {rt.dtype_name})")
                if run.resume is not None:
                    raise InputError("--resume continues a training run; --evaluate takes --out DIR for its pictures")
                res = evaluator.evaluate(lw.model, data_dir, rt, channels_last=train.values["channels_last"])
                png = None
                if run.out is not None:
                    png = _save_misclassified(evaluator, data_dir, res["pred"], run.out / "misclassified.png", run.force)
                report = MnistEvalReport(res["accuracy"], res["errors"], res["n"], tuple(map(tuple, res["confusion"])),
                                         tuple(res["confused_pairs"]), res["seconds"], res["images_per_s"], png,
                                         Provenance.collect(rt, lw.spec.name, lw.sha256))
                render.show(report, opts.json)
                return

            from dlcli.training import mnist as trainer

            from dlcli.training.run import check_run_folder

            run.check()
            run_dir = run.folder
            seed = {"seed": opts.seed} if opts.seed is not None else ({} if run.resuming else {"seed": 0})
            # A recipe fills in what the user did not give; a resumed run keeps its own values.
            cfg = (train.resumed(MnistTrainConfig, run_dir, **seed) if run.resuming
                   else train.build(MnistTrainConfig, **seed).with_recipe(train.given))
            cfg.check()
            check_run_folder(run_dir, resume=run.resuming, force=run.force, members=True)
            if cfg.batch_size < dist.world_size:
                raise InputError(f"--batch-size {cfg.batch_size} is smaller than the {dist.world_size} processes")
            reporter.message(f"training DeepConvNet on {rt.device} ({rt.dtype_name}"
                             + (f", {dist.world_size} processes, {dist.backend}" if dist.active else "")
                             + f"): {cfg.describe_recipe()}, seed {cfg.seed}")
            t0 = time.perf_counter()
            outcome = trainer.train(cfg, data_dir, rt, out_dir=run_dir, dist=dist, reporter=reporter,
                                    resume=run.resuming, force=run.force)
            if not dist.is_main:
                return
            if cfg.budget:
                for m in outcome.members:
                    spent = m.train_seconds
                    reporter.message(
                        f"budget {cfg.budget}: {m.steps:,} of {m.planned_steps:,} planned steps in {spent:.0f} s "
                        f"(evaluations included); test accuracy reached {m.test_acc:.2%} ({m.test_errors} errors), "
                        f"best {m.best_acc:.2%} after epoch {m.best_epoch}"
                        + (f" (kept as {m.out_dir / 'best.safetensors'})" if m.out_dir else ""))
            epochs_rows = tuple(dataclasses.replace(e, member=k + 1)
                                for k, m in enumerate(outcome.members) for e in m.epochs)
            members = tuple(
                {"seed": m.seed, "test_acc": m.test_acc, "test_errors": m.test_errors, "best_acc": m.best_acc,
                 "best_epoch": m.best_epoch, "steps": m.steps, "planned_steps": m.planned_steps,
                 "seconds": round(m.train_seconds, 1),
                 "weights": str(m.out_dir / "last.safetensors") if m.out_dir else None}
                for m in outcome.members)
            best = outcome.members[0].out_dir / "best.safetensors" if outcome.members[0].out_dir else None
            report = MnistTrainReport(
                run_dir, cfg.recipe(), epochs_rows, members, outcome.accuracy, outcome.errors, sum(map(sum, outcome.confusion)), cfg.ensemble,
                tuple(map(tuple, outcome.confusion)), tuple(outcome.pairs), outcome.misclassified_png,
                best if cfg.ensemble == 1 else None, dist.world_size, time.perf_counter() - t0,
                Provenance.collect(rt, None, None))
            render.show(report, opts.json)
        finally:
            dist.close()


def _save_misclassified(evaluator: object, data_dir: Path, pred: object, path: Path, force: bool) -> Optional[Path]:
    from dlcli.atomic import atomic_output
    from dlcli.data.mnist import load_mnist

    test_x, test_y = load_mnist(data_dir, "test")
    grid = evaluator.misclassified_grid(test_x, test_y, pred)  # type: ignore[attr-defined]
    if grid is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, force) as tmp:
        grid.save(tmp, format="PNG")
    return path
