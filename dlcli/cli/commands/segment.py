"""`dl segment IMAGE…` (= `dl segment run`), `dl segment train` and `dl segment eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command, group
from dlcli.cli.commands import _options, _video
from dlcli.cli.commands._engine import engine_label, engine_options, model_file_option, runtime_option


def register(app: typer.Typer) -> None:
    grp = group("segment", help="Semantic segmentation (torchvision FCN/DeepLabV3/LR-ASPP on COCO-VOC, or our small "
                                "FCN on synthetic scenes); `train` and `eval` for your own.", default="run")

    @command(grp, "run")
    def run(
        images: list[str] = _options.inputs_argument(),
        model: Optional[str] = _options.model_option("Weights ARCH.TAG (default fcn_resnet50.coco_voc, falling back to the bundled fcn_small.scenes offline; see `dl weights list --task segment`)."),
        weights_file: Optional[Path] = _options.weights_file_option("dl segment train"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for <name>_mask.png (class indices, input size), <name>_color.png and <name>_overlay.png; for a video, the overlay video (.mp4) or a folder for <name>_seg.mp4."),
        opacity: float = typer.Option(0.5, "--opacity", min=0.0, max=1.0, help="Colour strength of the overlay."),
        force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
        strict: bool = _options.strict_option(),
        model_file: Optional[Path] = model_file_option(),
        engine: Optional[str] = runtime_option(),
        jsonl: Optional[str] = _video.jsonl_file_option(),
        *,
        video: _video.VideoArgs,
        opts: Options,
    ) -> None:
        """Segment images: a table of the classes present with their pixel share, or JSON. A video (or
        --frames all) gives an overlay video (--out FILE.mp4) and per-frame class shares (--jsonl).

        Exit code 7 when some inputs could not be read (they are reported and skipped)."""
        from dlcli import render
        from dlcli.cli.app import raise_for_failures, report_error
        from dlcli.tasks import segment as task

        opts = engine_options(opts, engine, model_file)
        video = video.writing(jsonl)
        if video.wanted(images, image_only={"--strict": strict}):
            from dlcli.tasks.video import segment_video

            return _video.run(opts, images, video, out=out, force=force,
                              load=lambda rt, rep: task.load_segmenter(rt, model=model, weights_file=weights_file,
                                                                       offline=opts.offline, reporter=rep,
                                                                       model_file=model_file, engine=engine),
                              run_task=lambda src, rt, seg, **kw: segment_video(src, rt, segmenter=seg,
                                                                                opacity=opacity, **kw))
        rt, reporter = opts.start()
        seg = task.load_segmenter(rt, model=model, weights_file=weights_file, offline=opts.offline, reporter=reporter,
                                  model_file=model_file, engine=engine)
        reporter.message(f"{seg.spec.name} on {engine_label(seg.model, rt)}")
        report = task.segment(images, rt, segmenter=seg, out_dir=out, opacity=opacity, force=force, strict=strict,
                              offline=opts.offline, reporter=reporter, on_failure=lambda f: report_error(f.error))
        render.show(report, opts.json)
        raise_for_failures(len(report.failures), len(report.images), "read")

    from dlcli.cli.commands._train import register_vision_train
    from dlcli.training.configs import SegmentTrainConfig

    register_vision_train(grp, "segment", SegmentTrainConfig, arch="fcn_small", what="the small FCN", metric="mIoU")

    @command(grp, "eval", renamed={"--scene-seed": "--data-seed"})
    def eval_(
        model: Optional[str] = _options.model_option("Weights ARCH.TAG (default: the bundled fcn_small.scenes for scenes)."),
        weights_file: Optional[Path] = _options.weights_file_option("dl segment train"),
        data: str = typer.Option("scenes", "--data", help="'scenes' (held-out test seed) or a folder with images/ and masks/."),
        count: int = _options.count_option(),
        data_seed: Optional[int] = _options.data_seed_option(),
        batch_size: int = _options.batch_size_option(16),
        out: Optional[Path] = _options.pictures_option("iou.png (per-class IoU) and confusion.png (pixels)"),
        *,
        opts: Options,
    ) -> None:
        """mIoU (mean over classes present in truth or prediction) and pixel accuracy."""
        from dlcli.tasks import segment as task

        _options.run_eval(opts, out, lambda rt, reporter: task.evaluate(
            rt, model=model, weights_file=weights_file, data=data, count=count, seed=data_seed,
            batch_size=batch_size, offline=opts.offline, reporter=reporter, pictures_dir=out))

    app.add_typer(grp)
