"""`dl detect IMAGE…` (= `dl detect run`), `dl detect train` and `dl detect eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command, group
from dlcli.cli.commands import _options, _video


def register(app: typer.Typer) -> None:
    grp = group("detect", help="Detect objects (torchvision Faster R-CNN on COCO, or our small one on synthetic "
                               "scenes); `train` and `eval` for your own.", default="run")

    @command(grp, "run")
    def run(
        images: list[str] = _options.inputs_argument(),
        model: Optional[str] = _options.model_option("Weights ARCH.TAG (default fasterrcnn_resnet50_fpn_v2.coco, falling back to the bundled fasterrcnn_small.scenes offline; see `dl weights list --task detect`)."),
        weights_file: Optional[Path] = _options.weights_file_option("dl detect train"),
        threshold: float = typer.Option(0.5, "--threshold", "-t", min=0.0, max=1.0, help="Lowest score to report."),
        classes: Optional[str] = typer.Option(None, "--classes", help="Only these classes, comma-separated (e.g. person,dog)."),
        max_detections: int = typer.Option(100, "--max-detections", min=1, help="At most this many boxes per image (highest scores)."),
        batch_size: int = _options.batch_size_option(4),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for annotated images (<name>_det.png); for a video, the annotated video (.mp4) or a folder for <name>_det.mp4."),
        crops: Optional[Path] = typer.Option(None, "--crops", help="Folder for one cropped PNG per detection."),
        coco_json: Optional[Path] = typer.Option(None, "--coco-json", help="Write the detections in COCO results format to this file."),
        force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
        strict: bool = _options.strict_option(),
        jsonl: Optional[str] = _video.jsonl_file_option(),
        track: bool = typer.Option(False, "--track", help="Video: give each box an id kept across frames (IoU tracker), in the JSONL and on the video."),
        *,
        video: _video.VideoArgs,
        opts: Options,
    ) -> None:
        """Detect objects: a table (label, score, box in original pixels) per image, or JSON. A video
        (or --frames all) gives an annotated video (--out FILE.mp4) and per-frame JSONL (--jsonl).

        Exit code 7 when some inputs could not be read (they are reported and skipped)."""
        from dlcli import render
        from dlcli.atomic import check_writable
        from dlcli.cli.app import raise_for_failures, report_error
        from dlcli.tasks import detect as task

        video = video.writing(jsonl)
        if video.wanted(images, image_only={"--crops": crops, "--coco-json": coco_json, "--strict": strict},
                        video_only={"--track": track}):
            from dlcli.tasks.video import detect_video

            return _video.run(opts, images, video, out=out, force=force,
                              load=lambda rt, rep: task.load_detector(rt, model=model, weights_file=weights_file,
                                                                      offline=opts.offline, reporter=rep),
                              run_task=lambda src, rt, det, **kw: detect_video(
                                  src, rt, detector=det, threshold=threshold, classes=classes,
                                  max_detections=max_detections, batch_size=batch_size, track=track, **kw))

        if coco_json is not None:
            check_writable(coco_json, force)  # fail before the work, not after
        rt, reporter = opts.start()
        det = task.load_detector(rt, model=model, weights_file=weights_file, offline=opts.offline, reporter=reporter)
        reporter.message(f"{det.spec.name} on {rt.device} ({rt.dtype_name})")
        report = task.detect(images, rt, detector=det, threshold=threshold, classes=classes,
                             max_detections=max_detections, batch_size=batch_size, out_dir=out, crops_dir=crops,
                             force=force, strict=strict, offline=opts.offline, reporter=reporter,
                             on_failure=lambda f: report_error(f.error))
        if coco_json is not None:
            task.write_coco_json(report, coco_json, force=force)
            reporter.message(f"wrote COCO results to {coco_json}")
        render.show(report, opts.json)
        raise_for_failures(len(report.failures), len(report.images), "read")

    from dlcli.cli.commands._train import register_vision_train
    from dlcli.training.configs import DetectTrainConfig

    register_vision_train(grp, "detect", DetectTrainConfig, arch="fasterrcnn_small", what="the small Faster R-CNN", metric="mAP")

    @command(grp, "eval", renamed={"--scene-seed": "--data-seed"})
    def eval_(
        model: Optional[str] = _options.model_option("Weights ARCH.TAG (default: the bundled fasterrcnn_small.scenes for scenes)."),
        weights_file: Optional[Path] = _options.weights_file_option("dl detect train"),
        data: str = typer.Option("scenes", "--data", help="'scenes' (held-out test seed) or a COCO-format annotations JSON."),
        images: Optional[Path] = typer.Option(None, "--images", help="Image folder of a COCO JSON (default: the JSON's folder)."),
        count: int = _options.count_option(),
        data_seed: Optional[int] = _options.data_seed_option(),
        batch_size: int = _options.batch_size_option(8),
        out: Optional[Path] = _options.pictures_option("pr.png (per-class precision-recall) and confusion.png (with background)"),
        *,
        opts: Options,
    ) -> None:
        """mAP@0.5 and mAP@0.5:0.95 per class, and COCO's summary (AP by size, AR@1/10/100), by COCOeval's rules
        (crowd regions ignored, 100 detections per image and class, 101-point AP)."""
        from dlcli.tasks import detect as task

        _options.run_eval(opts, out, lambda rt, reporter: task.evaluate(
            rt, model=model, weights_file=weights_file, data=data, images=str(images) if images else None,
            count=count, seed=data_seed, batch_size=batch_size, offline=opts.offline, reporter=reporter,
            pictures_dir=out))

    app.add_typer(grp)
