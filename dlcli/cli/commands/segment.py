"""`dl segment IMAGE…` (= `dl segment run`), `dl segment train` and `dl segment eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command, group
from dlcli.cli.commands import _video
from dlcli.cli.commands._engine import engine_label, engine_options, model_file_option, runtime_option


def register(app: typer.Typer) -> None:
    grp = group("segment", help="Semantic segmentation (torchvision FCN/DeepLabV3/LR-ASPP on COCO-VOC, or our small "
                                "FCN on synthetic scenes); `train` and `eval` for your own.", default="run")

    @command(grp, "run")
    def run(
        images: list[str] = typer.Argument(..., help="Image files, folders, globs, http(s) URLs, or - for stdin."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Weights ARCH.TAG (default fcn_resnet50.coco_voc, falling back to the bundled fcn_small.scenes offline; see `dl weights list --task segment`)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="A .safetensors file written by `dl segment train`."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for <name>_mask.png (class indices, input size), <name>_color.png and <name>_overlay.png; for a video, the overlay video (.mp4) or a folder for <name>_seg.mp4."),
        opacity: float = typer.Option(0.5, "--opacity", min=0.0, max=1.0, help="Colour strength of the overlay."),
        force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
        strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable input instead of skipping it."),
        model_file: Optional[Path] = model_file_option(),
        engine: Optional[str] = runtime_option(),
        frames: str = _video.frames_option(),
        vid_stride: int = _video.vid_stride_option(),
        max_frames: Optional[int] = _video.max_frames_option(),
        start: float = _video.start_option(),
        jsonl: Optional[str] = _video.jsonl_file_option(),
        *,
        opts: Options,
    ) -> None:
        """Segment images: a table of the classes present with their pixel share, or JSON. A video (or
        --frames all) gives an overlay video (--out FILE.mp4) and per-frame class shares (--jsonl).

        Exit code 7 when some inputs could not be read (they are reported and skipped)."""
        from dlcli import render
        from dlcli.cli.app import raise_for_failures, report_error
        from dlcli.tasks import segment as task

        opts = engine_options(opts, engine, model_file)
        video = _video.VideoArgs(frames, vid_stride, max_frames, start, jsonl)
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
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Weights ARCH.TAG (default: the bundled fcn_small.scenes for scenes)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="A .safetensors file written by `dl segment train`."),
        data: str = typer.Option("scenes", "--data", help="'scenes' (held-out test seed) or a folder with images/ and masks/."),
        count: int = typer.Option(500, "--count", "-n", min=1, help="Scenes to evaluate on."),
        data_seed: Optional[int] = typer.Option(None, "--data-seed", help="Scene world to evaluate on (default: the test seed, 2; training used 0, validation 1)."),
        batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, help="Images per forward pass."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for pictures: iou.png (per-class IoU) and confusion.png (pixels)."),
        *,
        opts: Options,
    ) -> None:
        """mIoU (mean over classes present in truth or prediction) and pixel accuracy."""
        from dlcli import render
        from dlcli.cli.commands._pictures import check_pictures_dir, say_pictures
        from dlcli.tasks import segment as task

        check_pictures_dir(out)
        rt, reporter = opts.start()
        report = task.evaluate(rt, model=model, weights_file=weights_file, data=data, count=count, seed=data_seed,
                               batch_size=batch_size, offline=opts.offline, reporter=reporter, pictures_dir=out)
        say_pictures(out, report.pictures, reporter)
        render.show(report, opts.json)

    app.add_typer(grp)
