"""Video in and out: dlcli/video.py (PyAV decode/encode), dlcli/tasks/video.py (the frame loop over
detect/segment/classify/caption) and the commands' video options. Test videos come from the scene
world (dlcli.data.scenes.make_clip: shapes moving across frames), encoded with the same library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli.cli.app import app

av = pytest.importorskip("av")  # the `video` extra; `dev` installs it

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
FPS = 24
FRAMES = 48
DETECTOR = ["--model", "fasterrcnn_small.scenes", "--offline"]


def make_clip_video(path: Path, frames: int = FRAMES, *, fps: int = FPS, size: int = 128, objects: int = 3,
                    clip: int = 0) -> list:
    """Encode clip `clip` of world 3 into `path`; returns its ground truth per frame."""
    from dlcli import video
    from dlcli.data import scenes

    truth = []

    def gen():
        for f in scenes.make_clip(3, clip, frames, size=size, objects=objects):
            truth.append((f.boxes, f.labels))
            yield f.image

    video.write_video(gen(), path, fps=fps)
    return truth


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    return path, make_clip_video(path)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _iou(a, b) -> float:
    from dlcli.tasks.video import iou

    return iou(a, b)


def _one_line_error(result) -> str:
    """The command failed with exit 2 and exactly one `Error:` line, no traceback."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    return errors[0]


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


# --- the media layer -------------------------------------------------------------------------------


def test_clip_shapes_move_and_stay_in_frame() -> None:
    from dlcli.data import scenes

    frames = list(scenes.make_clip(3, 0, 30, objects=3))
    assert len(frames) == 30 and frames[0].image.shape == (128, 128, 3)
    x = np.stack([f.boxes[:, 0] for f in frames])  # (frames, objects) left edges
    assert (np.abs(np.diff(x, axis=0)) >= 1).mean(axis=0).min() > 0.8  # every shape moves in most frames
    assert np.abs(frames[0].boxes[:, 1] - frames[-1].boxes[:, 1]).max() <= 1  # sideways, in its own lane
    for f in frames:
        assert (f.boxes >= 0).all() and (f.boxes <= 128).all()
    # Deterministic: the same (seed, index) gives the same pixels.
    assert (next(scenes.make_clip(3, 0, 1, objects=3)).image == frames[0].image).all()


@pytest.mark.parametrize("suffix,codec", [(".mp4", "h264"), (".mov", "h264"), (".mkv", "h264"), (".avi", "mpeg4"),
                                          (".webm", "vp9")])
def test_write_then_read_every_container(tmp_path: Path, suffix: str, codec: str) -> None:
    from dlcli import video

    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(12)]
    assert video.write_video(frames, tmp_path / f"v{suffix}", fps=12) == 12
    info, count = video.probe(tmp_path / f"v{suffix}")
    assert (info.width, info.height, float(info.fps), count, info.codec) == (64, 48, 12.0, 12, codec)
    with video.VideoReader(tmp_path / f"v{suffix}") as reader:
        grey = [int(np.asarray(f.image).mean()) for f in reader]
    assert all(abs(g - 10 * i) <= 3 for i, g in enumerate(grey)), grey  # the frames, in order


def test_odd_sized_frames_keep_their_size(tmp_path: Path) -> None:
    from dlcli import video

    video.write_video([np.zeros((65, 33, 3), np.uint8)] * 3, tmp_path / "odd.mp4", fps=10)
    info, count = video.probe(tmp_path / "odd.mp4")
    assert (info.width, info.height, count) == (33, 65, 3)


def test_selection_start_stride_max_frames(clip) -> None:
    from dlcli import video

    path, _ = clip
    with video.VideoReader(path, stride=3) as r:
        assert [f.index for f in r] == list(range(0, FRAMES, 3)) and r.expected == FRAMES // 3
    with video.VideoReader(path, start=1.0, max_frames=5) as r:
        frames = list(r)
    assert [f.index for f in frames] == [24, 25, 26, 27, 28] and r.expected == 5
    assert frames[0].time == pytest.approx(1.0, abs=1e-3)


# --- detection on video ---------------------------------------------------------------------------


def test_detect_video_finds_the_moving_shapes(clip, tmp_path: Path) -> None:
    path, truth = clip
    out, lines = tmp_path / "det.mp4", tmp_path / "det.jsonl"
    result = runner.invoke(app, ["detect", str(path), *DETECTOR, "--out", str(out), "--jsonl", str(lines),
                                 "--json", "--quiet"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames"] == FRAMES and report["output"] == str(out) and report["warning"] is None
    records = _records(lines)
    assert [r["frame"] for r in records] == list(range(FRAMES))
    found = 0
    for rec, (boxes, labels) in zip(records, truth):
        dets = rec["detections"]
        found += all(any(d["label_id"] == lab and _iou(d["box"], box) >= 0.5 for d in dets)
                     for box, lab in zip(boxes.tolist(), labels.tolist()))
    assert found / FRAMES >= 0.95, f"all shapes found in {found} of {FRAMES} frames"
    from dlcli import video

    info, count = video.probe(out)
    assert (count, float(info.fps), info.width, info.height, info.codec) == (FRAMES, FPS, 128, 128, "h264")


def test_vid_stride_gives_the_strided_count_and_rate(clip, tmp_path: Path) -> None:
    from dlcli import video

    path, _ = clip
    out = tmp_path / "strided.mp4"
    result = runner.invoke(app, ["detect", str(path), *DETECTOR, "--vid-stride", "3", "--out", str(out), "-q",
                                 "--jsonl", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 0, result.stderr
    info, count = video.probe(out)
    assert count == FRAMES // 3 and float(info.fps) == FPS / 3  # same duration as the source
    assert [r["frame"] for r in _records(tmp_path / "s.jsonl")] == list(range(0, FRAMES, 3))


def test_track_keeps_one_id_per_moving_shape(clip, tmp_path: Path) -> None:
    path, truth = clip
    lines = tmp_path / "track.jsonl"
    result = runner.invoke(app, ["detect", str(path), *DETECTOR, "--track", "--jsonl", str(lines), "-q"])
    assert result.exit_code == 0, result.stderr
    ids: dict[int, set] = {}
    for rec, (boxes, labels) in zip(_records(lines), truth):
        for k, box in enumerate(boxes.tolist()):
            best = max(rec["detections"], key=lambda d: _iou(d["box"], box))
            if _iou(best["box"], box) >= 0.5:
                ids.setdefault(k, set()).add(best["track"])
    assert len(ids) == 3 and all(len(v) == 1 for v in ids.values()), ids
    assert len({next(iter(v)) for v in ids.values()}) == 3


def test_iou_tracker_unit() -> None:
    from dlcli.results import Detection
    from dlcli.tasks.video import IoUTracker

    t = IoUTracker(max_age=1)
    def d(x: float, lab: int = 1) -> Detection:
        return Detection("a", lab, 0.9, (x, 0.0, x + 10.0, 10.0))

    assert t.update([d(0), d(50)]) == [1, 2]
    assert t.update([d(52), d(2)]) == [2, 1]  # matched by overlap, not by order
    assert t.update([d(2, lab=2)]) == [3]  # another class never takes an id
    assert t.update([]) == [] and t.update([]) == []
    assert t.update([d(2)]) == [4]  # track 1 was unseen for longer than max_age


def test_segment_classify_caption_on_video(clip, tmp_path: Path) -> None:
    from dlcli import video

    path, _ = clip
    seg = runner.invoke(app, ["segment", str(path), "--model", "fcn_small.scenes", "--offline", "--max-frames", "6",
                              "--out", str(tmp_path), "--jsonl", str(tmp_path / "seg.jsonl"), "-q"])
    assert seg.exit_code == 0, seg.stderr
    recs = _records(tmp_path / "seg.jsonl")
    assert len(recs) == 6 and {"circle", "triangle"} <= {c["label"] for c in recs[0]["classes"]}
    assert video.probe(tmp_path / "clip_seg.mp4")[1] == 6
    cls = runner.invoke(app, ["classify", str(path), "--model", "efficientnet_lite0.imagenet", "--offline",
                              "--max-frames", "3", "--jsonl", "--out", str(tmp_path / "cls.mp4"), "-q"])
    assert cls.exit_code == 0, cls.stderr
    lines = [json.loads(line) for line in cls.stdout.splitlines()]
    assert [r["frame"] for r in lines[:-1]] == [0, 1, 2] and len(lines[0]["predictions"]) == 5
    assert lines[-1]["video"]["frames"] == 3 and video.probe(tmp_path / "cls.mp4")[1] == 3
    cap = runner.invoke(app, ["caption", str(path), "--offline", "--vid-stride", "16", "--jsonl", "-", "-q"])
    assert cap.exit_code == 0, cap.stderr
    lines = [json.loads(line) for line in cap.stdout.splitlines()]
    assert [r["frame"] for r in lines[:-1]] == [0, 16, 32]
    assert all(" of a " in r["caption"] or r["caption"].startswith("a ") for r in lines[:-1])


# --- GIFs and folders of frames -------------------------------------------------------------------


@pytest.fixture()
def gif_and_folder(tmp_path: Path) -> tuple[Path, Path, list]:
    from PIL import Image

    from dlcli.data import scenes

    clip = list(scenes.make_clip(1, 1, 10, objects=2))
    frames = [Image.fromarray(f.image) for f in clip]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in reversed(range(len(frames))):  # names sort in frame order; written in reverse to prove it
        frames[i].save(folder / f"f{i:02d}.png")
    return gif, folder, [f.boxes for f in clip]


def test_gif_first_frame_or_every_frame(gif_and_folder, tmp_path: Path) -> None:
    gif, _, _ = gif_and_folder
    still = runner.invoke(app, ["detect", str(gif), *DETECTOR, "--json", "-q"])
    assert still.exit_code == 0 and len(json.loads(still.stdout)["images"]) == 1  # the image path, as before
    every = runner.invoke(app, ["detect", str(gif), *DETECTOR, "--frames", "all", "--json", "-q",
                                "--out", str(tmp_path / "gif.mp4")])
    assert every.exit_code == 0, every.stderr
    report = json.loads(every.stdout)
    assert report["frames"] == 10 and report["fps"] == 10.0
    assert report["summary"]["frames_with_detections"] == 10


def test_folder_of_frames_in_name_order(gif_and_folder, tmp_path: Path) -> None:
    from dlcli import video

    _, folder, truth = gif_and_folder
    result = runner.invoke(app, ["detect", str(folder), *DETECTOR, "--frames", "all", "-q", "--start", "0.2",
                                 "--out", str(tmp_path / "f.webm"), "--jsonl", str(tmp_path / "f.jsonl")])
    assert result.exit_code == 0, result.stderr
    records = _records(tmp_path / "f.jsonl")
    assert [r["frame"] for r in records] == list(range(5, 10))  # 25 fps: 0.2 s = frame 5
    for rec in records:  # each record is its own frame's (the shapes moved between frames)
        assert all(any(_iou(d["box"], box) >= 0.5 for d in rec["detections"]) for box in truth[rec["frame"]].tolist())
    assert video.probe(tmp_path / "f.webm")[1] == 5


# --- bad input: one line, no traceback, nothing at the final path ----------------------------------------


def _unknown_codec(src: Path, dst: Path) -> None:
    """An AVI whose codec FourCC FFmpeg has no decoder for."""
    data = src.read_bytes()
    assert data.count(b"FMP4") >= 1
    dst.write_bytes(data.replace(b"FMP4", b"ZQZQ"))


@pytest.mark.parametrize("kind", ["zero-byte", "text", "unknown-codec", "cut-before-index"])
def test_bad_video_is_one_line_and_writes_nothing(kind: str, clip, tmp_path: Path) -> None:
    from dlcli import video

    bad = tmp_path / ("bad.avi" if kind == "unknown-codec" else "bad.mp4")
    if kind == "zero-byte":
        bad.write_bytes(b"")
    elif kind == "text":
        bad.write_text("this is not a video\n" * 20)
    elif kind == "unknown-codec":
        video.write_video([np.zeros((32, 32, 3), np.uint8)] * 4, tmp_path / "ok.avi", fps=4)
        _unknown_codec(tmp_path / "ok.avi", bad)
    else:  # an MP4 whose index (moov, written last without faststart) was cut off
        from fractions import Fraction

        c = av.open(str(bad), "w")
        s = c.add_stream("libx264", rate=Fraction(10))
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for _ in range(10):
            for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        c.close()
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    out, lines = tmp_path / "out" / "o.mp4", tmp_path / "out" / "o.jsonl"
    result = runner.invoke(app, ["detect", str(bad), *DETECTOR, "--out", str(out), "--jsonl", str(lines)])
    line = _one_line_error(result)
    assert str(bad.name) in line
    assert not out.exists() and not lines.exists()
    if out.parent.exists():
        assert _no_leftovers(out.parent) == []


def test_truncated_video_gives_a_warning_and_a_valid_shorter_output(clip, tmp_path: Path) -> None:
    from dlcli import video

    path, _ = clip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # our writer puts the index first
    out, lines = tmp_path / "cut_det.mp4", tmp_path / "cut.jsonl"
    result = runner.invoke(app, ["detect", str(cut), *DETECTOR, "--out", str(out), "--jsonl", str(lines)])
    assert result.exit_code == 0, result.stderr
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "truncated" in warnings[0] and "Traceback" not in result.stderr
    n = len(_records(lines))
    assert 0 < n < FRAMES
    info, count = video.probe(out)
    assert count == n and float(info.fps) == FPS


def test_failure_midway_leaves_nothing_at_the_final_paths(clip, tmp_path: Path, monkeypatch) -> None:
    from dlcli.device import Runtime
    from dlcli.tasks import video as vtask
    from dlcli.tasks.detect import load_detector

    path, _ = clip
    det = load_detector(Runtime.create("cpu", "fp32", None, False), model="fasterrcnn_small.scenes", offline=True)
    calls = {"n": 0}
    real = vtask.DetectFrames.run

    def failing(self, images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the video
        return real(self, images)

    monkeypatch.setattr(vtask.DetectFrames, "run", failing)
    with pytest.raises(KeyboardInterrupt):
        vtask.detect_video(str(path), det.runtime, detector=det, out=tmp_path / "o.mp4", jsonl=tmp_path / "o.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_missing_extra_is_one_line_naming_it(clip, monkeypatch) -> None:
    path, _ = clip
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    line = _one_line_error(runner.invoke(app, ["detect", str(path), *DETECTOR]))
    assert "pip install 'dlcli[video]'" in line


def test_refusals_before_any_work(clip, tmp_path: Path) -> None:
    path, _ = clip
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep")
    assert "--force" in _one_line_error(runner.invoke(app, ["detect", str(path), *DETECTOR, "--out", str(existing)]))
    assert existing.read_bytes() == b"keep"
    assert "input itself" in _one_line_error(runner.invoke(app, ["detect", str(path), *DETECTOR, "--out", str(path),
                                                                 "--force"]))
    assert "--track" in _one_line_error(runner.invoke(app, ["detect", str(ROOT / "samples" / "scene.png"), "--track",
                                                            *DETECTOR]))
    assert "--crops" in _one_line_error(runner.invoke(app, ["detect", str(path), "--crops", str(tmp_path), *DETECTOR]))
    assert "one video" in _one_line_error(runner.invoke(app, ["detect", str(path), str(path), *DETECTOR]))
    assert "past the end" in _one_line_error(runner.invoke(app, ["detect", str(path), "--start", "60", *DETECTOR]))
    assert "--out" in _one_line_error(runner.invoke(app, ["detect", str(path), "--out", str(tmp_path / "x.png"),
                                                          *DETECTOR]))


# --- dl play-dqn --record game.mp4 ------------------------------------------------------------------


def test_dqn_recording_as_mp4(tmp_path: Path) -> None:
    from dlcli import video
    from dlcli.errors import InputError
    from dlcli.tasks.dqn import check_record_path, write_recording

    frames = [np.full((210, 160, 3), i, np.uint8) for i in range(0, 60, 2)]  # Atari screens
    write_recording(frames, tmp_path / "game.mp4", fps=15)
    info, count = video.probe(tmp_path / "game.mp4")
    assert (count, float(info.fps), info.width, info.height, info.codec) == (30, 15.0, 160, 210, "h264")
    with pytest.raises(InputError, match="gif or .mp4"):
        check_record_path(tmp_path / "game.png")  # refused before a game is played


# --- memory stays flat however long the video --------------------------------------------------------

# Peak RSS growth allowed between frame 50 and the end of a 400-frame 256x256 detect run (annotated
# video and JSONL written). A 256x256 RGB frame is 196 kB: a loop that kept the decoded frames grew by
# 88 MB over these 350 frames; the streaming one grows by 0.6 MB (README "Video").
RSS_GROWTH_BOUND_MB = 40

_MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from dlcli import catalog, video
    from dlcli.data import scenes
    from dlcli.device import Runtime
    from dlcli.tasks.detect import load_detector
    from dlcli.tasks.video import detect_video

    catalog.load()
    folder = sys.argv[1]
    video.write_video((f.image for f in scenes.make_clip(3, 1, 400, size=256)), folder + "/long.mp4", fps=25)
    rt = Runtime.create("cpu", "fp32", None, False)
    det = load_detector(rt, model="fasterrcnn_small.scenes", offline=True)
    peak = {}

    def on_record(rec):
        if rec["frame"] == 50:
            peak["at_50"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    report = detect_video(folder + "/long.mp4", rt, detector=det, out=folder + "/out.mp4",
                          jsonl=folder + "/out.jsonl", on_record=on_record)
    peak["end"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": report.frames, "growth_mb": (peak["end"] - peak["at_50"]) / 1024}))
""")


def test_memory_stays_flat_on_a_long_video(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=240, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == 400
    assert result["growth_mb"] < RSS_GROWTH_BOUND_MB, result
