"""`dl detect VIDEO.mp4` against a bare loop, in one run: frames/s and the overhead of the command's
frame loop, plus its peak memory on a short and on a long video (streaming: it should not grow).

The video is a synthetic scene clip (shapes moving across frames, dlcli.data.scenes.make_clip),
encoded to H.264 with PyAV. Both sides use the bundled fasterrcnn_small.scenes on the CPU with
batches of 4 frames (the command's default) and each runs in its own fresh process:

- command: `python -m dlcli detect clip.mp4 --model fasterrcnn_small.scenes --out out.mp4
  --jsonl out.jsonl --json` (decode, model, thresholding, boxes drawn, JSONL written, H.264 encode);
  its frames/s is the report's own (the frame loop, without start-up and model loading);
- bare: the least a script must do for the same video: PyAV decode -> the same model -> PyAV
  H.264 encode of the frames (nothing drawn, nothing written beside the video), timed the same way.

Rounds alternate command and bare (pairs run back to back, so a busy machine slows both alike); the
ratio reported is the median over the rounds of command/bare. Both use --threads torch threads
(OMP_NUM_THREADS; default 1, so that the two are compared on equal terms on a shared machine).

    python benchmarks/video_speed.py                         # 1000 frames of 128x128, 5 rounds, RSS on 5000
    python benchmarks/video_speed.py --frames 300 --size 256 --rounds 3 --long 0 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = "fasterrcnn_small.scenes"
BATCH = 4


def make_video(path: Path, frames: int, size: int) -> None:
    from dlcli import video
    from dlcli.data import scenes

    video.write_video((f.image for f in scenes.make_clip(3, 0, frames, size=size, objects=3)), path, fps=25,
                      force=True)


def bare_loop(path: str, out: str) -> dict:
    """Decode -> model -> encode, nothing else; frames/s of the loop (model loaded before timing)."""
    import av

    from dlcli import catalog
    from dlcli.device import Runtime
    from dlcli.tasks.detect import load_detector

    catalog.load()
    det = load_detector(Runtime.create("cpu", "fp32", None, False), model=MODEL, offline=True)
    t0 = time.perf_counter()
    src = av.open(path)
    stream = src.streams.video[0]
    stream.thread_type = "AUTO"
    dst = av.open(out, "w", options={"movflags": "+faststart"})
    enc = dst.add_stream("libx264", rate=stream.average_rate)
    enc.width, enc.height, enc.pix_fmt = stream.codec_context.width, stream.codec_context.height, "yuv420p"
    enc.options = {"crf": "20", "preset": "veryfast"}
    n = 0
    batch: list = []

    def flush() -> None:
        det.forward([det.transform(im) for im in batch])
        for im in batch:
            for packet in enc.encode(av.VideoFrame.from_image(im)):
                dst.mux(packet)
        batch.clear()

    for frame in src.decode(stream):
        batch.append(frame.to_image())
        n += 1
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    for packet in enc.encode():
        dst.mux(packet)
    dst.close()
    src.close()
    seconds = time.perf_counter() - t0
    return {"frames": n, "frames_per_second": n / seconds}


def run_child(args: list[str]) -> tuple[str, float]:
    """(stdout, peak RSS in MB) of a child process (wait4 gives that child's own peak)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"child failed ({' '.join(args)}):\n{err.read()[-2000:]}")
    return out, usage.ru_maxrss / 1024  # Linux: kB


def command(path: Path, work: Path) -> tuple[float, float]:
    """(frames/s, peak RSS MB) of `dl detect` on `path`, in a fresh process."""
    out, rss = run_child(["-m", "dlcli", "detect", str(path), "--model", MODEL, "--offline", "--batch-size",
                          str(BATCH), "--out", str(work / "cmd.mp4"), "--jsonl", str(work / "cmd.jsonl"), "--force",
                          "--json", "--quiet"])
    return json.loads(out)["frames_per_second"], rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both (OMP_NUM_THREADS)")
    parser.add_argument("--long", type=int, default=5000, help="frames of the long video for peak RSS (0: skip)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--bare", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)  # the child's entry
    args = parser.parse_args()
    if args.bare:
        print(json.dumps(bare_loop(*args.bare)))
        return
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by both children
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        make_video(clip, args.frames, args.size)
        cmd_fps, bare_fps = [], []
        for _ in range(args.rounds):
            cmd_fps.append(command(clip, work)[0])
            out, _ = run_child([__file__, "--bare", str(clip), str(work / "bare.mp4")])
            bare_fps.append(json.loads(out)["frames_per_second"])
        c, b = statistics.median(cmd_fps), statistics.median(bare_fps)
        ratio = statistics.median(x / y for x, y in zip(cmd_fps, bare_fps))
        result = {
            "video": f"{args.frames} frames, {args.size}x{args.size}, H.264", "model": MODEL, "batch": BATCH,
            "torch_threads": args.threads,
            "command_fps": round(c, 1), "bare_fps": round(b, 1), "command_over_bare": round(ratio, 3),
            "overhead_percent": round(100 * (1 - ratio), 1),
            "rounds": {"command": [round(v, 1) for v in cmd_fps], "bare": [round(v, 1) for v in bare_fps]},
        }
        if args.long:
            long_clip = work / "long.mp4"
            make_video(long_clip, args.long, args.size)
            _, short_rss = command(clip, work)
            _, long_rss = command(long_clip, work)
            result["peak_rss_mb"] = {f"{args.frames} frames": round(short_rss, 1), f"{args.long} frames": round(long_rss, 1)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['video']}, {MODEL}, batches of {BATCH}, CPU, {args.threads} torch thread(s)")
    print(f"  dl detect (decode, model, boxes, JSONL, encode): {result['command_fps']:7.1f} frames/s  {result['rounds']['command']}")
    print(f"  bare loop (decode, model, encode):               {result['bare_fps']:7.1f} frames/s  {result['rounds']['bare']}")
    print(f"  command / bare = {result['command_over_bare']:.3f} (median of the rounds' ratios; "
          f"overhead {result['overhead_percent']:.1f}%, at most 10% wanted)")
    if "peak_rss_mb" in result:
        print("  peak RSS of dl detect: " + ", ".join(f"{k}: {v:.0f} MB" for k, v in result["peak_rss_mb"].items()))


if __name__ == "__main__":
    main()
