"""`dl caption IMAGE…` (= `dl caption run`), `dl caption train`, `dl caption eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.config_options import RunOptions, TrainOptions
from dlcli.cli.app import Options, command, group
from dlcli.cli.commands import _options, _video


def register(app: typer.Typer) -> None:
    grp = group("caption", help="Describe images in words (NIC: CNN encoder + LSTM decoder, beam search); "
                                "`train` and `eval` for your own captioners.", default="run")

    @command(grp, "run")
    def run(
        images: list[str] = _options.inputs_argument(),
        model: Optional[str] = _options.model_option("Weights name ARCH.TAG (default nic.scenes; see `dl weights list --task caption`)."),
        weights_file: Optional[Path] = _options.weights_file_option("dl caption train"),
        beam_size: int = typer.Option(3, "--beam-size", "-k", help="Beam width (1 = greedy)."),
        max_length: Optional[int] = typer.Option(None, "--max-length", help="Most words per caption (default: the weights' own, 24 for nic.scenes)."),
        all_candidates: bool = typer.Option(False, "--all", help="Show every beam candidate in the table (JSON always has them)."),
        batch_size: int = _options.batch_size_option(16, "Images per encoder pass."),
        strict: bool = _options.strict_option(),
        jsonl: Optional[str] = _video.jsonl_file_option(),
        out: Optional[Path] = _video.out_video_option(),
        force: bool = typer.Option(False, "--force", help="Video: overwrite the --out and --jsonl files."),
        *,
        video: _video.VideoArgs,
        opts: Options,
    ) -> None:
        """Caption images: a table of the best caption per image, or JSON with every beam candidate
        and its log-probability. A video (or --frames all) is captioned frame by frame (every Nth with
        --vid-stride): per-frame JSONL and a video with the caption on each frame (--out).
        Exit code 7 when some inputs could not be read."""
        from dlcli import render
        from dlcli.cli.app import raise_for_failures, report_error
        from dlcli.tasks import caption as task

        video = video.writing(jsonl)
        if video.wanted(images, image_only={"--all": all_candidates, "--strict": strict},
                        video_only={"--out": out, "--force": force}):
            from dlcli.tasks.video import caption_video

            return _video.run(opts, images, video, out=out, force=force,
                              load=lambda rt, rep: task.load_captioner(model, weights_file=weights_file,
                                                                       offline=opts.offline, reporter=rep),
                              run_task=lambda src, rt, cap, **kw: caption_video(
                                  src, rt, captioner=cap, beam_size=beam_size, max_length=max_length,
                                  batch_size=batch_size, **kw))

        rt, reporter = opts.start()
        report = task.caption_images(images, runtime=rt, model=model, weights_file=weights_file, beam_size=beam_size,
                                     max_length=max_length, batch_size=batch_size, offline=opts.offline,
                                     strict=strict, reporter=reporter)
        for failure in report.failures:
            report_error(failure.error)
        if opts.json or report.images:
            render.show(report, opts.json, all_candidates=all_candidates)
        raise_for_failures(len(report.failures), len(report.images), "captioned")

    from dlcli.training.configs import CaptionTrainConfig

    @command(grp, "train", config=CaptionTrainConfig, run_folder="runs/caption")
    def train(
        *,
        train: TrainOptions,
        run: RunOptions,
        opts: Options,
    ) -> None:
        """Train a captioner with teacher forcing; prints per-epoch loss and validation BLEU (Ctrl-C saves a
        checkpoint, --resume DIR continues; DDP under torchrun)."""
        import shlex
        import sys

        from dlcli import render
        from dlcli.cli.commands._train import distributed_session
        from dlcli.errors import InputError
        from dlcli.models.nic import BACKBONES
        from dlcli.training import caption as trainer

        run.check()
        v = train.values
        if v["captions_file"] is not None or v["images_dir"] is not None:
            if "data" in train.given and v["data"] != "coco":
                raise InputError("give either --data scenes or --captions FILE --images DIR, not both")
            v["data"] = "coco"
        elif "data" not in train.given and not run.resuming:
            raise InputError("say what to train on: --data scenes, or --captions FILE.json --images DIR")
        name = v["name"]
        if "." not in name.strip(".") or not name.startswith("nic."):
            raise InputError(f"--name {name!r} must be nic.TAG (e.g. nic.mine)")
        if v["freeze_encoder"] and not v["encoder_weights"] and not run.resuming:
            raise InputError("--freeze-encoder needs --encoder-weights (a random encoder would stay random)")
        if v["backbone"] not in BACKBONES:
            raise InputError(f"unknown --backbone {v['backbone']!r}; choose one of {', '.join(BACKBONES)}")
        cfg = train.for_run(CaptionTrainConfig, run, opts.seed)
        recipe = "dl " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        with distributed_session(opts) as (dist, rt, reporter):
            result = trainer.train_caption(cfg, rt, out=run.folder, resume=run.resuming, force=run.force, dist=dist,
                                           reporter=reporter, offline=opts.offline, recipe=recipe)
        if result is None:  # not rank 0 under torchrun
            return
        render.show(result, opts.json)

    @command(grp, "eval", renamed={"--size": "--count"})
    def evaluate(
        model: Optional[str] = _options.model_option("Weights name ARCH.TAG (default nic.scenes)."),
        weights_file: Optional[Path] = _options.weights_file_option("dl caption train"),
        data: str = typer.Option("scenes", "--data", help="`scenes` (held-out seeded scenes) unless --captions is given."),
        count: int = _options.count_option("Scenes to caption (scenes data)."),
        data_seed: Optional[int] = _options.data_seed_option(),
        captions: Optional[Path] = typer.Option(None, "--captions", help="COCO-format caption annotations to test on."),
        images: Optional[Path] = typer.Option(None, "--images", help="Folder holding the images the --captions file names."),
        beam_size: int = typer.Option(3, "--beam-size", "-k", help="Beam width (1 = greedy)."),
        max_length: Optional[int] = typer.Option(None, "--max-length", help="Most words per caption."),
        examples: int = typer.Option(5, "--examples", min=0, help="Captions to show beside their references."),
        out: Optional[Path] = _options.pictures_option("captions.png (the --examples images with their generated and reference captions)"),
        *,
        opts: Options,
    ) -> None:
        """Corpus BLEU-1..4 on a held-out set."""
        from dlcli.tasks import caption as task

        _options.run_eval(opts, out, lambda rt, reporter: task.evaluate_weights(
            rt, model=model, weights_file=weights_file, data=data, count=count, seed=data_seed,
            captions_file=str(captions) if captions else None, images_dir=str(images) if images else None,
            beam_size=beam_size, max_length=max_length, examples=examples, offline=opts.offline,
            reporter=reporter, pictures_dir=out))

    app.add_typer(grp)
