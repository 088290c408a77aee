"""`dl classify IMAGE…` (= `dl classify run`) and `dl classify train DATA_DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.config_options import RunOptions, TrainOptions
from dlcli.cli.app import Options, command, group
from dlcli.cli.commands import _options, _video
from dlcli.cli.commands._engine import engine_label, engine_options, engine_start, model_file_option, runtime_option


def register(app: typer.Typer) -> None:
    grp = group("classify", help="Classify images (ImageNet zoo, digits, your fine-tuned models); fine-tune with `train`.",
                default="run")

    @command(grp, "run")
    def run(
        images: list[str] = _options.inputs_argument(),
        model: Optional[str] = _options.model_option("Weights name ARCH.TAG (default resnet50.imagenet, falling back to the offline efficientnet_lite2.imagenet when it cannot be downloaded; see `dl weights list --task classify`)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="A .safetensors file written by dlcli training (carries its architecture, labels and preprocessing)."),
        top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="How many classes to show per image."),
        batch_size: int = _options.batch_size_option(16),
        strict: bool = _options.strict_option(),
        jsonl: bool = typer.Option(False, "--jsonl", help="Stream one JSON object per image, or per frame of a video (and a last line with provenance)."),
        show_preprocessed: Optional[Path] = typer.Option(None, "--show-preprocessed", help="Save what the network saw (a grid for several inputs) to this image file."),
        force: bool = typer.Option(False, "--force", help="Overwrite the --show-preprocessed file (or the --out video)."),
        model_file: Optional[Path] = model_file_option(),
        engine: Optional[str] = runtime_option(),
        out: Optional[Path] = _video.out_video_option(),
        *,
        video: _video.VideoArgs,
        opts: Options,
    ) -> None:
        """Classify images: a table of the top-k classes per image, or JSON. A video (or --frames all)
        gives a video with the top class on each frame (--out FILE.mp4); --jsonl streams one line per frame.

        Exit code 7 when some inputs could not be read (they are reported and skipped)."""
        from dlcli import render
        from dlcli.atomic import check_writable
        from dlcli.cli.app import raise_for_failures, report_error
        from dlcli.errors import InputError
        from dlcli.results import InputFailure
        from dlcli.tasks import classify as task

        if opts.json and jsonl:
            raise InputError("give either --json or --jsonl, not both")
        if video.wanted(images, image_only={"--show-preprocessed": show_preprocessed, "--strict": strict},
                        video_only={"--out": out}):
            from dlcli.tasks.video import classify_video

            opts = engine_options(opts, engine, model_file)
            return _video.run(opts, images, video.streaming(jsonl), out=out, force=force,
                              load=lambda rt, rep: task.load_classifier(rt, model=model, weights_file=weights_file,
                                                                        offline=opts.offline, reporter=rep,
                                                                        model_file=model_file, engine=engine),
                              run_task=lambda src, rt, clf, **kw: classify_video(src, rt, classifier=clf, top_k=top_k,
                                                                                 batch_size=batch_size, **kw))
        if show_preprocessed is not None:
            check_writable(show_preprocessed, force)  # fail before the work, not after
        opts = engine_options(opts, engine, model_file)
        rt, reporter = engine_start(opts, engine, model_file)  # onnxruntime: no torch unless it must export
        clf = task.load_classifier(rt, model=model, weights_file=weights_file, offline=opts.offline, reporter=reporter,
                                   model_file=model_file, engine=engine)
        reporter.message(f"{clf.spec.name} on {engine_label(clf.model, rt)}")

        stream = render.ClassifyStream("jsonl" if jsonl else "json" if opts.json else "table", clf.spec.name)

        def on_failure(failure: InputFailure) -> None:
            report_error(failure.error)
            stream.failure(failure)

        seen: list = [] if show_preprocessed is not None else None  # type: ignore[assignment]
        report = task.classify(images, rt, classifier=clf, top_k=top_k, batch_size=batch_size, strict=strict,
                               offline=opts.offline, reporter=reporter, on_result=stream.result,
                               on_failure=on_failure, preprocessed=seen)
        stream.finish(report, engine_label(clf.model, rt))
        if show_preprocessed is not None and seen:
            from dlcli import media

            media.save_image(task.preprocessed_image(seen, clf.spec), show_preprocessed, force=True)
            reporter.message(f"saved what the network saw to {show_preprocessed}")
        raise_for_failures(len(report.failures), len(report.images), "classified")

    from dlcli.training.configs import TransferArgs

    @command(grp, "train", config=TransferArgs, run_folder="runs/classify")
    def train(
        data_dir: Path = typer.Argument(..., help="ImageFolder layout: one subfolder of images per class."),
        *,
        train: TrainOptions,
        run: RunOptions,
        opts: Options,
    ) -> None:
        """Fine-tune a pretrained backbone on your images (transfer learning); saves the best weights."""
        from dlcli import render
        from dlcli.training import transfer

        run.check()
        args = train.for_run(TransferArgs, run, opts.seed, data_dir=data_dir)
        import dataclasses

        def make_runtime(device: Optional[str]) -> object:
            return dataclasses.replace(opts, device=device or opts.device).runtime()

        report = transfer.train(args, make_runtime, out=run.folder, resume=run.resuming, force=run.force,
                                device=opts.device, offline=opts.offline, reporter=opts.reporter())
        if report is None:  # not rank 0 under torchrun
            return
        render.show(report, opts.json)

    app.add_typer(grp)
