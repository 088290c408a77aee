"""Video through the per-image tasks: one frame loop for detect, segment, classify and caption.

source (a video file, an animated GIF, or a folder of frames in name order; dlcli/video.py decodes)
-> --start / --vid-stride / --max-frames -> batches of frames -> the task's own per-image functions
(tasks/detect.py, segment.py, classify.py, caption.py) -> per frame: one JSONL record, one annotated
frame drawn with media.py's helpers -> an encoded video. Frames are streamed: at most one batch of
frames is in memory, and the report keeps tallies, not per-frame results, so memory stays flat
however long the video. Both outputs are written atomically (a temporary file renamed at the end):
a failed or interrupted run leaves nothing at the final paths.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

from dlcli.errors import InputError
from dlcli.progress import NullReporter, Reporter

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime
    from dlcli.results import VideoReport

FRAMES_CHOICES = ("first", "all")
FOLDER_FPS = 25.0
"""The frame rate given to a folder of frames (it has none of its own)."""


def wants_video(inputs: Sequence[str], frames: str = "first") -> bool:
    """Whether a command's inputs go through the frame loop: a video file among them, or
    `--frames all` (every frame of a GIF; a folder as the frames of one video)."""
    from dlcli.video import is_video

    if frames not in FRAMES_CHOICES:
        raise InputError(f"--frames must be first or all (got {frames!r})")
    return frames == "all" or any(is_video(spec) for spec in inputs)


# --- sources -----------------------------------------------------------------------------------


class FolderReader:
    """The images of a folder, in name order, as the frames of one video (the first frame fixes the
    size; the frame rate is FOLDER_FPS). An unreadable frame is skipped and counted in `warning`."""

    def __init__(self, folder: str, *, stride: int = 1, max_frames: int | None = None, start: float = 0.0) -> None:
        from dlcli import media
        from dlcli.video import StreamInfo, FrameSelector

        self.source = folder
        self.select = FrameSelector(stride, max_frames, start)
        self.files = media.expand_inputs([folder])
        self.warning: str | None = None
        self._skipped: list[str] = []
        first = self._load(0)
        if first is None:
            raise InputError(f"{self.files[0]}: the first frame of {folder} cannot be read")
        self._first = first
        fps = Fraction(int(FOLDER_FPS))
        self.info = StreamInfo(first.size[0], first.size[1], fps, len(self.files), None, "images")

    def _load(self, i: int) -> Any:
        from dlcli import media
        from dlcli.video import MAX_FRAME_PIXELS

        try:
            return media.load_image(self.files[i], max_pixels=MAX_FRAME_PIXELS)
        except InputError as exc:
            if i == 0:
                raise
            self._skipped.append(exc.message)
            return None

    @property
    def expected(self) -> int | None:
        return self.select.expected(len(self.files), self.info.fps)

    def __enter__(self) -> "FolderReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        from dlcli.video import Frame

        for i in range(len(self.files)):
            t = i / float(self.info.fps)
            verdict = self.select.take(t)
            if verdict is None:
                break
            if not verdict:
                continue
            image = self._first if i == 0 else self._load(i)
            if image is not None:
                yield Frame(i, t, image)
        self._first = None
        if self._skipped:
            self.warning = f"{len(self._skipped)} frame(s) of {self.source} skipped; the first: {self._skipped[0]}"


def open_source(spec: str, *, frames: str = "all", stride: int = 1, max_frames: int | None = None,
                start: float = 0.0) -> Any:
    """A reader of frames for one input: a video file, an animated GIF, or (with frames="all") a
    folder of frames. Other inputs are a one-line InputError."""
    from dlcli import media, video

    if spec == "-" or media.is_url(spec):
        raise InputError(f"{spec}: video is read from a local file; save it first")
    path = Path(spec).expanduser()
    if path.is_dir():
        if frames != "all":
            raise InputError(f"{spec}: a folder is read as the frames of one video with --frames all")
        return FolderReader(spec, stride=stride, max_frames=max_frames, start=start)
    if video.is_video(path):
        return video.VideoReader(path, stride=stride, max_frames=max_frames, start=start, source=spec)
    if path.suffix.lower() == ".gif":
        return video.GifReader(path, stride=stride, max_frames=max_frames, start=start, source=spec,
                               max_bytes=media.MAX_IMAGE_BYTES)
    raise InputError(f"{spec}: --frames all reads a video ({', '.join(video.VIDEO_SUFFIXES)}), an animated .gif "
                     "or a folder of frames")


def output_path(out: str | Path | None, source: str, suffix: str) -> Path | None:
    """--out as a video file (by its suffix), or as a folder for `<stem><suffix>.mp4`."""
    from dlcli.atomic import check_output_dir
    from dlcli.video import VIDEO_SUFFIXES

    if out is None:
        return None
    out = Path(out).expanduser()
    if out.suffix.lower() in VIDEO_SUFFIXES:
        return out
    if out.suffix and not out.is_dir():
        raise InputError(f"--out {out}: for a video give a {'/'.join(VIDEO_SUFFIXES)} file or a folder")
    stem = Path(source.rstrip("/")).stem or "video"
    return check_output_dir(out) / f"{stem}{suffix}.mp4"


# --- the frame loop ----------------------------------------------------------------------------


class FrameTask(Protocol):
    """What the frame loop needs from a task: batches of PIL frames -> per frame a JSON record and,
    when `draw` is set, the annotated frame."""

    task: str
    model: str
    suffix: str  # of the default output name (<stem><suffix>.mp4)
    batch_size: int
    draw: bool

    def run(self, images: list[Any]) -> list[tuple[dict[str, Any], Any]]: ...

    def summary(self) -> dict[str, Any]: ...


def run_frames(
    handler: FrameTask,
    source: str,
    runtime: Runtime,
    *,
    spec: Any,
    sha256: str | None,
    frames: str = "all",
    out: str | Path | None = None,
    jsonl: str | Path | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    force: bool = False,
    vid_stride: int = 1,
    max_frames: int | None = None,
    start: float = 0.0,
    domain_hint: str | None = None,
    engine: str | None = None,
    reporter: Reporter | None = None,
) -> VideoReport:
    """Run `handler` over the frames of `source`; write the annotated video (`out`) and one JSONL
    record per processed frame (`jsonl`, and/or `on_record` for streaming). Returns a VideoReport."""
    from dlcli.atomic import atomic_output, check_writable
    from dlcli.domain import DomainGuard
    from dlcli.results import Provenance, VideoReport
    from dlcli.video import VideoWriter

    reporter = reporter or NullReporter()
    out_path = output_path(out, source, handler.suffix)
    jsonl_path = Path(jsonl).expanduser() if jsonl is not None else None
    src = Path(source).expanduser().resolve()
    for flag, path in (("--out", out_path), ("--jsonl", jsonl_path)):
        if path is not None:
            if path.resolve() == src:
                raise InputError(f"{flag} {path} is the input itself; choose another file")
            check_writable(path, force)  # refuse before decoding a single frame
    if out_path is not None and jsonl_path is not None and out_path.resolve() == jsonl_path.resolve():
        raise InputError("--out and --jsonl name the same file")
    handler.draw = out_path is not None
    guard = DomainGuard(spec, domain_hint, reporter)
    warning: str | None = None
    processed = 0
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(open_source(source, frames=frames, stride=vid_stride, max_frames=max_frames,
                                                 start=start))
        info = reader.info
        out_fps = Fraction(info.fps) / vid_stride
        writer = None
        if out_path is not None:
            tmp = stack.enter_context(atomic_output(out_path, force))
            writer = stack.enter_context(VideoWriter(tmp, width=info.width, height=info.height, fps=out_fps,
                                                     name=out_path))
        lines = None
        if jsonl_path is not None:
            tmp_jsonl = stack.enter_context(atomic_output(jsonl_path, force))
            lines = stack.enter_context(open(tmp_jsonl, "w", encoding="utf-8"))
        # The model's name is in the notice line above the bar.
        reporter.start(f"{handler.task} {Path(source).name}", reader.expected, unit="frames")
        stack.callback(reporter.finish)

        def flush(batch: list[Any]) -> None:
            nonlocal processed, warning
            if not batch:
                return
            if processed == 0:
                warning = guard.warning(batch[0].image)  # the first frame stands for the video
            for frame, (record, annotated) in zip(batch, handler.run([f.image for f in batch])):
                record = {"frame": frame.index, "time": round(frame.time, 4), **record}
                if lines is not None:
                    lines.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
                if on_record is not None:
                    on_record(record)
                if writer is not None:
                    writer.write(annotated)
            processed += len(batch)
            reporter.advance(len(batch), fps=processed / max(time.perf_counter() - t0, 1e-9))
            batch.clear()

        batch: list[Any] = []
        for frame in reader:
            batch.append(frame)
            if len(batch) >= handler.batch_size:
                flush(batch)
        flush(batch)
        if processed == 0:
            raise InputError(f"{source}: no frame selected (--start {start:g} s is past the end, or the video "
                             "is empty)")
        if reader.warning:
            reporter.message(f"warning: {reader.warning}")
            warning = reader.warning if warning is None else f"{reader.warning}; {warning}"
    seconds = time.perf_counter() - t0
    return VideoReport(
        task=handler.task, model=handler.model, source=source, width=info.width, height=info.height,
        fps=float(info.fps), frames=processed, vid_stride=vid_stride, start=start,
        output=str(out_path) if out_path is not None else None,
        output_fps=float(out_fps) if out_path is not None else None,
        jsonl=str(jsonl_path) if jsonl_path is not None else ("-" if on_record is not None else None),
        summary=handler.summary(), seconds=round(seconds, 3), frames_per_second=round(processed / seconds, 2),
        warning=warning, provenance=Provenance.collect(runtime, spec.name, sha256, engine=engine),
    )


def _mode(image: Any, mode: str) -> Any:
    """A decoded frame (RGB) in the mode the model's preprocessing reads (e.g. L for digits)."""
    return image if image.mode == mode else image.convert(mode)


# --- detection ---------------------------------------------------------------------------------


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class IoUTracker:
    """Persistent ids for boxes across frames: each detection takes the id of the track of its class
    whose last box overlaps it most (IoU at least `min_iou`, greedy by IoU); a detection that matches
    none starts a new track; a track unseen for more than `max_age` frames is dropped."""

    def __init__(self, min_iou: float = 0.3, max_age: int = 5) -> None:
        self.min_iou, self.max_age = min_iou, max_age
        self.tracks: dict[int, tuple[int, tuple[float, ...], int]] = {}  # id -> (label_id, box, frames unseen)
        self.next_id = 1

    def update(self, detections: Sequence[Any]) -> list[int]:
        pairs = sorted(((iou(box, d.box), tid, k) for tid, (label, box, _) in self.tracks.items()
                        for k, d in enumerate(detections) if d.label_id == label), reverse=True)
        ids: list[int | None] = [None] * len(detections)
        taken: set[int] = set()
        for overlap, tid, k in pairs:
            if overlap < self.min_iou:
                break
            if tid in taken or ids[k] is not None:
                continue
            ids[k] = tid
            taken.add(tid)
        for k, d in enumerate(detections):
            if ids[k] is None:
                ids[k] = self.next_id
                self.next_id += 1
            self.tracks[ids[k]] = (d.label_id, tuple(d.box), 0)  # type: ignore[index]
        for tid in list(self.tracks):
            if tid not in ids:
                label, box, unseen = self.tracks[tid]
                if unseen + 1 > self.max_age:
                    del self.tracks[tid]
                else:
                    self.tracks[tid] = (label, box, unseen + 1)
        return ids  # type: ignore[return-value]


class DetectFrames:
    task, suffix = "detect", "_det"

    def __init__(self, det: Any, *, threshold: float, wanted: set[int] | None, max_detections: int,
                 batch_size: int, track: bool) -> None:
        self.det, self.threshold, self.wanted, self.max_detections = det, threshold, wanted, max_detections
        self.model, self.batch_size, self.draw = det.spec.name, batch_size, True
        self.tracker = IoUTracker() if track else None
        self.by_label: Counter[str] = Counter()
        self.frames_with = 0

    def run(self, images: list[Any]) -> list[tuple[dict[str, Any], Any]]:
        from dlcli import media
        from dlcli.tasks.detect import annotate, to_detections

        prepared = [self.det.prepare(_mode(im, self.det.mode)) for im in images]
        outputs = self.det.forward([t for t, _ in prepared])
        done = []
        for image, output, (_, factor) in zip(images, outputs, prepared):
            found = to_detections(self.det, output, factor, image.size, threshold=self.threshold, wanted=self.wanted,
                                  max_detections=self.max_detections)
            self.by_label.update(d.label for d in found)
            self.frames_with += bool(found)
            rows = [d.to_dict() for d in found]
            annotated = None
            if self.tracker is not None:
                ids = self.tracker.update(found)
                for row, tid in zip(rows, ids):
                    row["track"] = tid
                if self.draw:
                    colors = media.palette(max(ids, default=0) + 1)
                    annotated = media.draw_boxes(image, [d.box for d in found],
                                                 [f"#{t} {d.label} {d.score:.2f}" for d, t in zip(found, ids)],
                                                 [colors[t] for t in ids])
            elif self.draw:
                annotated = annotate(image, found)
            done.append(({"detections": rows}, annotated))
        return done

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frames_with_detections": self.frames_with,
                               "detections": dict(self.by_label.most_common())}
        if self.tracker is not None:
            out["tracks"] = self.tracker.next_id - 1
        return out


def detect_video(source: str, runtime: Runtime, *, detector: Any, threshold: float = 0.5, classes: str | None = None,
                 max_detections: int = 100, batch_size: int = 4, track: bool = False,
                 **frame_options: Any) -> VideoReport:
    """Detect objects in every selected frame of a video; see `run_frames` for the outputs."""
    from dlcli.tasks.detect import FOR_PHOTOS, parse_classes

    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"--threshold must be between 0 and 1 (got {threshold})")
    if max_detections < 1 or batch_size < 1:
        raise InputError("--max-detections and --batch-size must be at least 1")
    handler = DetectFrames(detector, threshold=threshold, wanted=parse_classes(classes, detector.labels),
                           max_detections=max_detections, batch_size=batch_size, track=track)
    return run_frames(handler, source, runtime, spec=detector.spec, sha256=detector.loaded.sha256,
                      domain_hint=FOR_PHOTOS, **frame_options)


# --- segmentation ------------------------------------------------------------------------------


class SegmentFrames:
    task, suffix, batch_size = "segment", "_seg", 1  # one frame per forward pass, as the image task

    def __init__(self, seg: Any, *, opacity: float) -> None:
        self.seg, self.opacity, self.model, self.draw = seg, opacity, seg.spec.name, True
        self.n_classes = seg.num_classes or 256
        self.frames_with: Counter[str] = Counter()
        self.share: Counter[str] = Counter()

    def run(self, images: list[Any]) -> list[tuple[dict[str, Any], Any]]:
        from dlcli.tasks.segment import mask_classes, overlay

        done = []
        for image in images:
            mask = self.seg.predict(_mode(image, self.seg.mode)).numpy()
            classes = mask_classes(self.seg, mask)
            for c in classes:
                self.frames_with[c.label] += 1
                self.share[c.label] += c.share
            annotated = overlay(image, mask, self.n_classes, self.opacity) if self.draw else None
            done.append(({"classes": [c.to_dict() for c in classes]}, annotated))
        return done

    def summary(self) -> dict[str, Any]:
        return {"frames_with_class": dict(self.frames_with.most_common()),
                "total_share": {k: round(v, 3) for k, v in self.share.most_common()}}


def segment_video(source: str, runtime: Runtime, *, segmenter: Any, opacity: float = 0.5,
                  **frame_options: Any) -> VideoReport:
    """Segment every selected frame of a video (overlay video, per-frame class shares)."""
    from dlcli.tasks.segment import FOR_PHOTOS

    if not 0.0 <= opacity <= 1.0:
        raise InputError(f"--opacity must be between 0 and 1 (got {opacity})")
    return run_frames(SegmentFrames(segmenter, opacity=opacity), source, runtime, spec=segmenter.spec,
                      sha256=segmenter.loaded.sha256, domain_hint=FOR_PHOTOS,
                      engine=getattr(segmenter.model, "engine", None), **frame_options)


# --- classification and captioning: a text tag on each frame ----------------------------------------


def _tag(image: Any, text: str, *, bottom: bool = False) -> Any:
    """The frame with `text` on dark boxes in a corner (top left; bottom left for captions),
    wrapped at word boundaries to the frame's width."""
    from PIL import ImageDraw

    from dlcli import media

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    size = max(9, round(max(out.size) / 32))
    f = media.font(size)
    lines: list[str] = []
    for word in text.split():
        wider = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(wider, font=f) <= out.width - 12:
            lines[-1] = wider
        else:
            lines.append(word)
    step = size + 6
    y = out.height - step * len(lines) - 2 if bottom else 4
    for line in lines:
        media.text_with_background(draw, (4, y), line, (30, 30, 30), size)
        y += step
    return out


class ClassifyFrames:
    task, suffix = "classify", "_cls"

    def __init__(self, clf: Any, *, top_k: int, batch_size: int) -> None:
        self.clf, self.top_k, self.batch_size, self.model, self.draw = clf, top_k, batch_size, clf.spec.name, True
        self.top1: Counter[str] = Counter()

    def run(self, images: list[Any]) -> list[tuple[dict[str, Any], Any]]:
        import torch

        from dlcli.results import Prediction

        probs = self.clf.forward(torch.stack([self.clf.preprocess(_mode(im, self.clf.mode)) for im in images]))
        done = []
        for image, top in zip(images, self.clf.postprocess(probs, self.top_k)):
            self.top1[top[0][1]] += 1
            preds = [Prediction(rank + 1, label, idx, prob).to_dict() for rank, (idx, label, prob) in enumerate(top)]
            annotated = _tag(image, f"{top[0][1]} {top[0][2]:.2f}") if self.draw else None
            done.append(({"predictions": preds}, annotated))
        return done

    def summary(self) -> dict[str, Any]:
        return {"top_1": dict(self.top1.most_common(10))}


def classify_video(source: str, runtime: Runtime, *, classifier: Any, top_k: int = 5, batch_size: int = 16,
                   **frame_options: Any) -> VideoReport:
    """Classify every selected frame of a video (top-1 label and probability drawn on each frame)."""
    from dlcli.tasks.classify import FOR_PHOTOS

    if top_k < 1 or batch_size < 1:
        raise InputError("--top-k and --batch-size must be at least 1")
    return run_frames(ClassifyFrames(classifier, top_k=top_k, batch_size=batch_size), source, runtime,
                      spec=classifier.spec, sha256=classifier.loaded.sha256, domain_hint=FOR_PHOTOS,
                      engine=getattr(classifier.model, "engine", None), **frame_options)


class CaptionFrames:
    task, suffix = "caption", "_cap"

    def __init__(self, cap: Any, runtime: Runtime, *, beam_size: int, max_length: int, batch_size: int) -> None:
        self.cap, self.runtime, self.beam_size, self.limit = cap, runtime, beam_size, max_length
        self.net = runtime.place(cap.model)
        self.batch_size, self.model, self.draw = batch_size, cap.loaded.name, True
        self.captions: Counter[str] = Counter()

    def run(self, images: list[Any]) -> list[tuple[dict[str, Any], Any]]:
        from dlcli.tasks.caption import caption_batch

        tensors = [self.cap.transform(_mode(im, self.cap.mode)) for im in images]
        found = caption_batch(self.net, self.cap.vocab, tensors, self.runtime, beam_size=self.beam_size,
                              limit=self.limit)
        done = []
        for image, candidates in zip(images, found):
            best = candidates[0]
            self.captions[best.caption] += 1
            annotated = _tag(image, best.caption, bottom=True) if self.draw else None
            done.append(({"caption": best.caption, "log_prob": best.log_prob}, annotated))
        return done

    def summary(self) -> dict[str, Any]:
        common = self.captions.most_common(1)
        return {"distinct_captions": len(self.captions), "most_common": common[0][0] if common else None}


def caption_video(source: str, runtime: Runtime, *, captioner: Any, beam_size: int = 3, max_length: int | None = None,
                  batch_size: int = 16, **frame_options: Any) -> VideoReport:
    """Caption every selected frame (or every Nth, --vid-stride) of a video."""
    from dlcli.tasks.caption import FOR_PHOTOS, check_options

    check_options(beam_size, max_length, batch_size)
    handler = CaptionFrames(captioner, runtime, beam_size=beam_size, max_length=max_length or captioner.max_length,
                            batch_size=batch_size)
    return run_frames(handler, source, runtime, spec=captioner.loaded.spec, sha256=captioner.loaded.sha256,
                      domain_hint=FOR_PHOTOS, **frame_options)
