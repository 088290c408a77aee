"""The video options shared by detect, segment, classify and caption (`--frames`, `--vid-stride`,
`--max-frames`, `--start`, `--jsonl FILE`), and the one function that runs a command on a video:
load the model with the command's own loader, run the frame loop (dlcli/tasks/video.py), render.
(A leading underscore keeps command discovery from registering it.)"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import typer

FRAMES_HELP = ("first | all. Video files (.mp4 .mov .avi .mkv .webm) always give every frame; `all` also reads "
               "every frame of an animated GIF, and a folder as the frames of one video (name order, 25 fps).")


# The options every video-reading command has, added by `command(...)` to a function that declares
# `video: VideoArgs` (python name, type, typer option), so that they are declared once.
_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("frames", str, typer.Option("first", "--frames", help=FRAMES_HELP)),
    ("vid_stride", int, typer.Option(1, "--vid-stride", min=1, max=10_000, help="Video: process every Nth frame "
                                     "(the output video keeps the source's duration: fps / N).")),
    ("max_frames", Optional[int], typer.Option(None, "--max-frames", min=1, help="Video: stop after this many "
                                               "processed frames.")),
    ("start", float, typer.Option(0.0, "--start", min=0.0, help="Video: start at this time, in seconds.")),
)
_PREFIX = "video__"


def params() -> list[inspect.Parameter]:
    """The shared video options as parameters of a command's generated signature."""
    return [inspect.Parameter(_PREFIX + name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
            for name, kind, option in _OPTIONS]


def collect(values: dict[str, Any]) -> "VideoArgs":
    """Take the shared video options out of a command's parsed values."""
    return VideoArgs(**{name: values.pop(_PREFIX + name) for name, _, _ in _OPTIONS})


def jsonl_file_option() -> Any:
    return typer.Option(None, "--jsonl", help="Video: write one JSON record per processed frame to this file "
                                              "(- for stdout).")


def out_video_option() -> Any:
    return typer.Option(None, "--out", "-o", help="Video: the annotated video (.mp4 H.264 by default; .mov .avi "
                                                  ".mkv .webm), or a folder for <name>_<task>.mp4.")


@dataclass(frozen=True)
class VideoArgs:
    """What the user gave of the video options."""

    frames: str = "first"
    vid_stride: int = 1
    max_frames: Optional[int] = None
    start: float = 0.0
    jsonl: Optional[str] = None

    def writing(self, jsonl: Optional[str]) -> "VideoArgs":
        """These options with the per-frame records written to `jsonl` (a file, - for stdout)."""
        return dataclasses.replace(self, jsonl=jsonl)

    def streaming(self, jsonl: bool) -> "VideoArgs":
        """These options with the per-frame records on stdout (classify's --jsonl flag) or nowhere."""
        return dataclasses.replace(self, jsonl="-" if jsonl else None)

    def wanted(self, inputs: Sequence[str], *, image_only: Optional[dict[str, Any]] = None,
               video_only: Optional[dict[str, Any]] = None) -> bool:
        """True when the inputs are a video (run the frame loop). Options of the other mode are
        refused in one line rather than ignored."""
        from dlcli.errors import InputError
        from dlcli.tasks.video import wants_video

        video = wants_video(inputs, self.frames)
        if video:
            given = [flag for flag, value in (image_only or {}).items() if value]
            if given:
                raise InputError(f"{given[0]} is for images, not video input")
            if len(inputs) != 1:
                raise InputError(f"give one video at a time (got {len(inputs)} inputs)")
        else:
            video_flags = {"--vid-stride": self.vid_stride != 1, "--max-frames": self.max_frames,
                           "--start": self.start, "--jsonl": self.jsonl, **(video_only or {})}
            given = [flag for flag, value in video_flags.items() if value]
            if given:
                raise InputError(f"{given[0]} is for video input (a video file, or --frames all)")
        return video


def run(opts: Any, inputs: Sequence[str], args: VideoArgs, *, load: Callable[[Any, Any], Any],
        run_task: Callable[..., Any], out: Optional[Path], force: bool) -> None:
    """Load the model (`load(runtime, reporter)`), run `run_task(source, runtime, model, **frame
    options)` over the video and render its VideoReport (a table, --json, or JSONL on stdout)."""
    from dlcli import render
    from dlcli.cli.commands._engine import engine_label
    from dlcli.errors import InputError
    from dlcli.video import is_video, require_av

    if args.jsonl == "-" and opts.json:
        raise InputError("give either --json or --jsonl -, not both (both write to stdout)")
    if is_video(inputs[0]) or out is not None:
        require_av()  # the missing extra, said before a model is loaded
    rt, reporter = opts.start()
    model = load(rt, reporter)
    reporter.message(f"{model.spec.name if hasattr(model, 'spec') else model.loaded.name} on "
                     f"{engine_label(getattr(model, 'model', None), rt)}")
    to_stdout = args.jsonl == "-"
    report = run_task(inputs[0], rt, model, frames=args.frames, out=out, force=force,
                      jsonl=None if to_stdout or args.jsonl is None else Path(args.jsonl),
                      on_record=render.emit_jsonl if to_stdout else None, vid_stride=args.vid_stride,
                      max_frames=args.max_frames, start=args.start, reporter=reporter)
    if to_stdout and not opts.json:
        render.emit_jsonl({"video": report.to_dict()})  # the last line: totals and provenance
    else:
        render.show(report, opts.json)
