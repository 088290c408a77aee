"""`dl caption IMAGE…` (= `dl caption run`), `dl caption train`, `dl caption eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command, group


def register(app: typer.Typer) -> None:
    grp = group("caption", help="Describe images in words (NIC: CNN encoder + LSTM decoder, beam search); "
                                "`train` and `eval` for your own captioners.", default="run")

    @command(grp, "run")
    def run(
        images: list[str] = typer.Argument(..., help="Image files, folders, globs, http(s) URLs, or - for stdin."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Weights name ARCH.TAG (default nic.scenes; see `dl weights list --task caption`)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="A .safetensors file written by `dl caption train`."),
        beam_size: int = typer.Option(3, "--beam-size", "-k", help="Beam width (1 = greedy)."),
        max_length: Optional[int] = typer.Option(None, "--max-length", help="Most words per caption (default: the weights' own, 24 for nic.scenes)."),
        all_candidates: bool = typer.Option(False, "--all", help="Show every beam candidate in the table (JSON always has them)."),
        batch_size: int = typer.Option(16, "--batch-size", "-b", help="Images per encoder pass."),
        strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable input instead of skipping it."),
        *,
        opts: Options,
    ) -> None:
        """Caption images: a table of the best caption per image, or JSON with every beam candidate
        and its log-probability. Exit code 7 when some inputs could not be read."""
        from dlcli import render
        from dlcli.cli.app import raise_for_failures, report_error
        from dlcli.tasks import caption as task

        rt, reporter = opts.start()
        report = task.caption_images(images, runtime=rt, model=model, weights_file=weights_file, beam_size=beam_size,
                                     max_length=max_length, batch_size=batch_size, offline=opts.offline,
                                     strict=strict, reporter=reporter)
        for failure in report.failures:
            report_error(failure.error)
        if opts.json:
            render.emit_json(report.to_dict())
        elif report.images:
            render.render_caption_report(report, all_candidates)
        raise_for_failures(len(report.failures), len(report.images), "captioned")

    @command(grp, "train")
    def train(
        data: Optional[str] = typer.Option(None, "--data", help="`scenes`: the synthetic scene world (dlcli/data/scenes.py)."),
        captions: Optional[Path] = typer.Option(None, "--captions", help="COCO-format caption annotations (captions_train2017.json layout)."),
        images: Optional[Path] = typer.Option(None, "--images", help="Folder holding the images the --captions file names."),
        out: Path = typer.Option(Path("runs/caption"), "--out", "-o", help="Run folder: NAME.safetensors (best), last.safetensors, checkpoint.pt, history.jsonl."),
        name: str = typer.Option("nic.custom", "--name", help="Weights name ARCH.TAG recorded in the file (and its file name)."),
        epochs: int = typer.Option(10, "--epochs", min=1, help="Passes over the training set."),
        batch_size: int = typer.Option(32, "--batch-size", "-b", min=2, help="Images per step."),
        lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (AdamW, warm-up then cosine)."),
        train_size: int = typer.Option(8000, "--train-size", min=1, help="Scenes rendered for training (world seed --data-seed)."),
        val_size: int = typer.Option(300, "--val-size", min=1, help="Held-out scenes for per-epoch BLEU (world seed --data-seed + 1)."),
        val_fraction: float = typer.Option(0.05, "--val-fraction", help="COCO: share of the images held out for validation."),
        data_seed: int = typer.Option(0, "--data-seed", min=0, help="Scene world of the training set."),
        image_size: int = typer.Option(80, "--image-size", min=32, help="Images are squashed to this square size."),
        backbone: str = typer.Option("small", "--backbone", help="small | resnet18 | resnet34 | resnet50."),
        encoder_weights: Optional[str] = typer.Option(None, "--encoder-weights", help="Start the ResNet encoder from a classify entry, e.g. resnet18.imagenet."),
        freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="Train only the projection and the decoder."),
        embed_dim: int = typer.Option(128, "--embed-dim", min=8, help="Word (and image) embedding size."),
        hidden_dim: int = typer.Option(256, "--hidden-dim", min=8, help="LSTM state size."),
        max_length: int = typer.Option(24, "--max-length", min=1, help="Captions are cut to this many words."),
        min_count: int = typer.Option(1, "--min-count", min=1, help="COCO: rarer words become <unk>."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder from its checkpoint."),
        *,
        opts: Options,
    ) -> None:
        """Train a captioner with teacher forcing; prints per-epoch loss and validation BLEU."""
        import shlex
        import sys

        from dlcli import render
        from dlcli.errors import InputError
        from dlcli.training import caption as trainer

        if captions is not None or images is not None:
            if data not in (None, "coco"):
                raise InputError("give either --data scenes or --captions FILE --images DIR, not both")
            data = "coco"
        elif data is None:
            if resume is None:
                raise InputError("say what to train on: --data scenes, or --captions FILE.json --images DIR")
            data = "scenes"  # --resume continues with the data the run was started on
        if "." not in name.strip(".") or not name.startswith("nic."):
            raise InputError(f"--name {name!r} must be nic.TAG (e.g. nic.mine)")
        if freeze_encoder and not encoder_weights and resume is None:
            raise InputError("--freeze-encoder needs --encoder-weights (a random encoder would stay random)")
        cfg = trainer.CaptionTrainConfig(
            out=str(out), data=data, captions_file=str(captions) if captions else None,
            images_dir=str(images) if images else None, train_size=train_size, val_size=val_size,
            val_fraction=val_fraction, image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr,
            max_length=max_length, min_count=min_count, backbone=backbone, embed_dim=embed_dim,
            hidden_dim=hidden_dim, freeze_encoder=freeze_encoder, encoder_weights=encoder_weights, name=name,
            seed=opts.seed if opts.seed is not None else 0, data_seed=data_seed,
        )
        from dlcli.models.nic import BACKBONES

        if backbone not in BACKBONES:
            raise InputError(f"unknown --backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        recipe = "dl " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        rt, reporter = opts.start()
        result = trainer.train_caption(cfg, rt, reporter=reporter, resume=str(resume) if resume else None,
                                       offline=opts.offline, recipe=recipe)
        if opts.json:
            from dataclasses import asdict

            render.emit_json(asdict(result))
        else:
            render.print_table(f"trained {name}", ["", ""], [
                ("best epoch", result.best_epoch),
                *((k, v) for k, v in result.metrics.items() if k.startswith("val_bleu")),
                ("weights", result.weights),
                ("use it", f"dl caption IMAGE --weights-file {result.weights}"),
            ])

    @command(grp, "eval")
    def evaluate(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Weights name (default nic.scenes)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="A .safetensors file written by `dl caption train`."),
        data: str = typer.Option("scenes", "--data", help="`scenes` (held-out seeded scenes) unless --captions is given."),
        size: int = typer.Option(500, "--size", help="How many scenes to caption."),
        data_seed: int = typer.Option(2, "--data-seed", min=0, help="Scene world to test on (training used 0, validation 1)."),
        captions: Optional[Path] = typer.Option(None, "--captions", help="COCO-format caption annotations to test on."),
        images: Optional[Path] = typer.Option(None, "--images", help="Folder holding the images the --captions file names."),
        beam_size: int = typer.Option(3, "--beam-size", "-k", help="Beam width (1 = greedy)."),
        max_length: Optional[int] = typer.Option(None, "--max-length", help="Most words per caption."),
        examples: int = typer.Option(5, "--examples", min=0, help="Captions to show beside their references."),
        *,
        opts: Options,
    ) -> None:
        """Corpus BLEU-1..4 on a held-out set."""
        from dlcli import render
        from dlcli.tasks import caption as task

        rt = opts.runtime()
        reporter = opts.reporter()
        report = task.evaluate_weights(rt, model=model, weights_file=weights_file, data=data, size=size,
                                       data_seed=data_seed, captions_file=str(captions) if captions else None,
                                       images_dir=str(images) if images else None, beam_size=beam_size,
                                       max_length=max_length, examples=examples, offline=opts.offline,
                                       reporter=reporter)
        if opts.json:
            render.emit_json(report.to_dict())
        else:
            render.render_caption_eval(report)

    app.add_typer(grp)
