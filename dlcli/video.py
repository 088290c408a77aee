"""Video in and out at the media layer: decode a video file (or an animated GIF) one frame at a
time, and encode frames into a video file, through PyAV (FFmpeg's libraries ship inside its wheel;
the optional extra `dlcli[video]`).

Frames are streamed: a reader holds one decoded frame at a time and a writer encodes each frame
as it comes, so memory stays flat however long the video. Bad input (an empty file, text named
.mp4, a codec FFmpeg cannot decode) is a one-line InputError; a video that ends early (truncated)
yields the frames that are there and sets `warning`. Writers write into the path they are given;
callers hand them the temporary file of `dlcli.atomic.atomic_output`, so a failed run never leaves
a half-written video at the final path.

`av` and numpy are imported inside functions: `dl --help` must not pay for FFmpeg's libraries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

from dlcli.atomic import regular_file_stat
from dlcli.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
EXTRA_HINT = "pip install 'dlcli[video]'"
# A frame holds width x height x 3 bytes several times over (decoded, RGB, annotated, encoded):
# 8K UHD (33 Mpx) fits, a header that claims 60000x60000 does not get decoded (README "Video").
MAX_FRAME_PIXELS = 40_000_000
MAX_FPS = 1000.0  # above this a header's frame rate is nonsense; outputs fall back to DEFAULT_FPS
DEFAULT_FPS = 25.0
# Encoder per output container. H.264 plays everywhere; AVI gets MPEG-4 part 2 (what AVI players
# expect) and WebM gets VP9 (the only video codecs WebM allows are VP8/VP9/AV1).
_ENCODERS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "mpeg4", ".webm": "libvpx-vp9"}


def require_av() -> Any:
    """The `av` module, or a one-line InputError saying which extra to install."""
    try:
        import av
    except ImportError:
        raise InputError(f"video needs PyAV, which is not installed: {EXTRA_HINT}") from None
    return av


def is_video(spec: str | Path) -> bool:
    """A video file by its name (.mp4 .mov .avi .mkv .webm, any case)."""
    return Path(str(spec)).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its position in the source (0-based, before striding), its time in
    seconds from the start of the source, and the picture (PIL RGB)."""

    index: int
    time: float
    image: Any


@dataclass(frozen=True)
class StreamInfo:
    """What a source says about itself before decoding: size, frame rate, and the number of frames
    when the container records it (None when it does not, e.g. MKV/WebM)."""

    width: int
    height: int
    fps: Fraction
    frames: int | None
    duration: float | None  # seconds, when known
    codec: str


def _short(exc: BaseException) -> str:
    """FFmpeg's message without the errno and file name PyAV wraps it in."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__


def _check_file(path: Path, what: str) -> None:
    """A regular, non-empty file (a FIFO would block FFmpeg's open; a folder or device is refused)."""
    st = regular_file_stat(path, what, kind="video file")
    if st.st_size == 0:
        raise InputError(f"{what}: empty file (0 bytes), not a video")


def check_frame_size(width: int, height: int, what: str) -> None:
    if width < 1 or height < 1:
        raise InputError(f"{what}: {width}x{height} frames are empty")
    if width * height > MAX_FRAME_PIXELS:
        raise InputError(f"{what}: {width}x{height} frames are over the limit of {MAX_FRAME_PIXELS:,} pixels; "
                         "scale the video down first")


def _fps(value: Any) -> Fraction:
    """A usable frame rate from a header's value (None, 0 or absurd -> DEFAULT_FPS)."""
    try:
        rate = Fraction(value) if value else Fraction(0)
    except (TypeError, ValueError, ZeroDivisionError):
        rate = Fraction(0)
    if not 0 < rate <= MAX_FPS:
        return Fraction(int(DEFAULT_FPS))
    return rate.limit_denominator(1001)


class FrameSelector:
    """--start / --vid-stride / --max-frames over a stream of (index, time) frames."""

    def __init__(self, stride: int, max_frames: int | None, start: float) -> None:
        if stride < 1:
            raise InputError(f"--vid-stride must be at least 1 (got {stride})")
        if max_frames is not None and max_frames < 1:
            raise InputError(f"--max-frames must be at least 1 (got {max_frames})")
        if not start >= 0:  # also refuses NaN
            raise InputError(f"--start must be 0 or more seconds (got {start})")
        self.stride, self.max_frames, self.start = stride, max_frames, start
        self.seen = 0  # frames at or after --start
        self.taken = 0

    def take(self, time: float) -> bool | None:
        """True: process this frame; False: skip it; None: stop (--max-frames reached)."""
        if self.max_frames is not None and self.taken >= self.max_frames:
            return None
        # Half a microsecond of slack: frame times are rounded in the container's time base.
        if time + 5e-7 < self.start:
            return False
        keep = self.seen % self.stride == 0
        self.seen += 1
        if keep:
            self.taken += 1
        return keep

    def expected(self, total: int | None, fps: Fraction) -> int | None:
        """How many frames the selection will give from a source of `total` frames (for the bar)."""
        if total is None:
            return self.max_frames
        first = min(total, max(0, math.ceil(self.start * float(fps) - 1e-6)))
        n = -(-(total - first) // self.stride)
        return min(n, self.max_frames) if self.max_frames is not None else n


class VideoReader:
    """Decode a video file one frame at a time (`with VideoReader(path) as r: for f in r: ...`).

    `info` is known after opening; `warning` is set when the video ended before its header said
    it would (truncated, or a damaged packet that stopped the decoder)."""

    def __init__(self, path: str | Path, *, stride: int = 1, max_frames: int | None = None, start: float = 0.0,
                 source: str | None = None) -> None:
        self.path = Path(path).expanduser()
        self.source = source or str(path)
        self.select = FrameSelector(stride, max_frames, start)
        self.warning: str | None = None
        self._container: Any = None
        self.info = self._open()

    def _open(self) -> StreamInfo:
        _check_file(self.path, self.source)
        av = require_av()
        try:
            self._container = av.open(str(self.path), mode="r")
        except av.FFmpegError as exc:
            raise InputError(f"{self.source}: not a video FFmpeg can read ({_short(exc)}); "
                             "is it complete and really a video?") from None
        except OSError as exc:
            raise InputError(f"{self.source}: cannot be read ({exc.strerror or exc})") from None
        streams = self._container.streams.video
        if not streams:
            self.close()
            raise InputError(f"{self.source}: holds no video stream")
        stream = streams[0]
        ctx = stream.codec_context
        name = getattr(ctx, "name", None) if ctx is not None else None
        if ctx is None or not name:
            tag = getattr(stream, "codec_tag", "") or "unknown"
            self.close()
            raise InputError(f"{self.source}: its video codec ({tag}) is not one FFmpeg can decode; "
                             "convert it to H.264 first (ffmpeg -i IN -c:v libx264 OUT.mp4)")
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        try:
            check_frame_size(width, height, self.source)
        except InputError:
            self.close()
            raise
        stream.thread_type = "AUTO"  # frame threads: decoding keeps up with the model
        self._stream = stream
        fps = _fps(stream.average_rate or stream.guessed_rate)
        frames = int(stream.frames) if stream.frames and stream.frames > 0 else None
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration:
            duration = self._container.duration / 1_000_000  # AV_TIME_BASE
        return StreamInfo(width, height, fps, frames, duration, name)

    @property
    def expected(self) -> int | None:
        """Frames the selection will give (None when the container does not say)."""
        total = self.info.frames
        if total is None and self.info.duration:
            total = int(round(self.info.duration * float(self.info.fps)))
        return self.select.expected(total, self.info.fps)

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _seek_to_start(self) -> None:
        """Jump to the key frame before --start instead of decoding everything before it."""
        if self.select.start <= 0:
            return
        stream = self._stream
        if not stream.time_base:
            return
        try:
            self._container.seek(int(self.select.start / stream.time_base), stream=stream, backward=True)
        except Exception:  # an unseekable file is decoded from the start (frames before --start skipped)
            pass

    def __iter__(self) -> Iterator[Frame]:
        av = require_av()
        self._seek_to_start()
        stream = self._stream
        base = stream.time_base or Fraction(1, int(self.info.fps) or 1)
        fps = self.info.fps
        decoded = 0
        last_time = None
        index = -1
        try:
            for frame in self._container.decode(stream):
                decoded += 1
                if frame.pts is not None:
                    t = float((frame.pts - (stream.start_time or 0)) * base)
                    # A frame's position is its time in frames: right after a seek as well.
                    index = int(round(t * float(fps)))
                else:
                    index += 1
                    t = index / float(fps)
                last_time = t
                verdict = self.select.take(t)
                if verdict is None:
                    return
                if verdict:
                    if (frame.width, frame.height) != (self.info.width, self.info.height):
                        check_frame_size(frame.width, frame.height, self.source)
                    yield Frame(index, t, frame.to_image())
        except av.FFmpegError as exc:
            if decoded == 0:
                raise InputError(f"{self.source}: no frame could be decoded ({_short(exc)})") from None
            self.warning = (f"{self.source}: decoding stopped after {decoded} frame(s) ({_short(exc)}); "
                            "the video is truncated or damaged, the output holds the frames before that")
            return
        if decoded == 0:
            if self.select.start > 0:
                raise InputError(f"{self.source}: --start {self.select.start:g} s is past the end of the video")
            raise InputError(f"{self.source}: no frame could be decoded (truncated or empty video)")
        self._check_complete(decoded, last_time)

    def _check_complete(self, decoded: int, last_time: float | None) -> None:
        """A file cut short often decodes without an error: compare with what the header promised."""
        info = self.info
        if self.select.start <= 0 and info.frames is not None and decoded < info.frames:
            self.warning = (f"{self.source}: only {decoded} of the {info.frames} frames its header lists could be "
                            "decoded; the video is truncated, the output holds the frames that were there")
        elif info.duration and last_time is not None and last_time + 2.5 / float(info.fps) < info.duration:
            self.warning = (f"{self.source}: the video ends at {last_time:.2f} s of the {info.duration:.2f} s its "
                            "header lists; it is truncated, the output holds the frames that were there")


class GifReader:
    """Every frame of an animated GIF (Pillow decodes it lazily, one frame at a time), with the same
    interface as VideoReader. The frame rate is the first frame's duration's."""

    def __init__(self, path: str | Path, *, stride: int = 1, max_frames: int | None = None, start: float = 0.0,
                 source: str | None = None, max_bytes: int = 512 << 20) -> None:
        from PIL import Image, UnidentifiedImageError

        self.path = Path(path).expanduser()
        self.source = source or str(path)
        self.select = FrameSelector(stride, max_frames, start)
        self.warning: str | None = None
        _check_file(self.path, self.source)
        if self.path.stat().st_size > max_bytes:
            raise InputError(f"{self.source}: larger than the limit of {max_bytes >> 20} MiB")
        try:
            self._image = Image.open(self.path)
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{self.source}: not an image PIL can read ({_short(exc)})") from None
        width, height = self._image.size
        check_frame_size(width, height, self.source)
        n = int(getattr(self._image, "n_frames", 1))
        duration_ms = float(self._image.info.get("duration") or 0)
        fps = _fps(Fraction(1000) / Fraction(duration_ms).limit_denominator(1000) if duration_ms > 0 else None)
        self.info = StreamInfo(width, height, fps, n, None, "gif")

    @property
    def expected(self) -> int | None:
        return self.select.expected(self.info.frames, self.info.fps)

    def __enter__(self) -> "GifReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._image.close()

    def __iter__(self) -> Iterator[Frame]:
        t = 0.0
        for index in range(self.info.frames or 1):
            try:
                self._image.seek(index)
                rgb = self._image.convert("RGB")  # composites the frame on the ones before it
            except (OSError, EOFError, ValueError) as exc:
                if index == 0:
                    raise InputError(f"{self.source}: image is truncated or corrupt ({_short(exc)})") from None
                self.warning = (f"{self.source}: decoding stopped at frame {index} ({_short(exc)}); the GIF is "
                                "truncated, the output holds the frames before it")
                return
            verdict = self.select.take(t)
            if verdict is None:
                return
            if verdict:
                yield Frame(index, t, rgb)
            duration = self._image.info.get("duration") or 1000.0 / float(self.info.fps)
            t += float(duration) / 1000.0


def encoder_for(path: str | Path) -> str:
    """The encoder a video file name asks for; an InputError for other names."""
    suffix = Path(str(path)).suffix.lower()
    if suffix not in _ENCODERS:
        raise InputError(f"{path}: a video output needs one of {', '.join(VIDEO_SUFFIXES)} (got {suffix or 'none'})")
    return _ENCODERS[suffix]


class VideoWriter:
    """Encode PIL frames into a video file of a fixed size and frame rate (H.264 in .mp4/.mov/.mkv,
    MPEG-4 in .avi, VP9 in .webm). `path` is written directly; pass `name` (the final path) for its
    suffix when `path` is a temporary file. A frame of another size is scaled to the video's."""

    def __init__(self, path: str | Path, *, width: int, height: int, fps: Fraction | float,
                 name: str | Path | None = None, crf: int = 20) -> None:
        av = require_av()
        shown = name or path
        codec = encoder_for(shown)
        check_frame_size(width, height, str(shown))
        self.size = (int(width), int(height))
        self.frames = 0
        fmt = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi",
               ".webm": "webm"}[Path(str(shown)).suffix.lower()]
        # faststart: the index goes at the front, so the file plays while it downloads and a
        # truncated copy still decodes up to where it was cut.
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        try:
            self._container = av.open(str(path), mode="w", format=fmt, options=options)
            rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(int(DEFAULT_FPS))
            self._stream = self._container.add_stream(codec, rate=rate)
        except (av.FFmpegError, ValueError) as exc:
            raise InputError(f"cannot write {shown}: {_short(exc)}") from None
        self._stream.width, self._stream.height = self.size
        # 4:2:0 is what every player decodes, but H.264 and MPEG-4 need even sizes for it; an odd-sized
        # video keeps full chroma (4:4:4) instead of being cropped or padded.
        even = width % 2 == 0 and height % 2 == 0
        self._stream.pix_fmt = "yuv420p" if even or codec == "libvpx-vp9" else "yuv444p"
        if codec == "libx264":
            self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        elif codec == "libvpx-vp9":
            self._stream.options = {"crf": str(crf + 12), "b": "0", "deadline": "realtime", "cpu-used": "8"}
        elif codec == "mpeg4":
            self._stream.options = {"qscale": "3"}
            self._stream.codec_context.qscale = 3
        self._name = str(shown)
        self._av = av

    def write(self, image: Any) -> None:
        """Encode one frame (PIL image of any mode; scaled if its size is not the video's)."""
        from PIL import Image

        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != self.size:
            image = image.resize(self.size, Image.Resampling.BILINEAR)
        frame = self._av.VideoFrame.from_image(image)
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (self._av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot write {self._name}: {_short(exc)}") from None
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the container (its index and trailer)."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        except (self._av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot write {self._name}: {_short(exc)}") from None
        finally:
            self._container = None

    def abort(self) -> None:
        """Close without caring for the result (the caller deletes the temporary file)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(frames: Any, path: str | Path, *, fps: float, force: bool = False) -> int:
    """Encode an iterable of PIL images or HxWx3 uint8 arrays into `path` atomically (the first
    frame fixes the size). Returns the number of frames written."""
    from PIL import Image

    from dlcli.atomic import atomic_output

    path = Path(path).expanduser()
    encoder_for(path)
    require_av()
    count = 0
    with atomic_output(path, force) as tmp:
        writer: VideoWriter | None = None
        try:
            for f in frames:
                image = f if isinstance(f, Image.Image) else Image.fromarray(f)
                if writer is None:
                    writer = VideoWriter(tmp, width=image.size[0], height=image.size[1], fps=fps, name=path)
                writer.write(image)
                count += 1
            if writer is None:
                raise InputError(f"{path}: no frames to write")
            writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    return count


def probe(path: str | Path) -> tuple[StreamInfo, int]:
    """(header info, frames actually decodable): for tests and checks of written videos."""
    with VideoReader(path) as reader:
        count = sum(1 for _ in reader)
        return reader.info, count
