"""`dl detect VIDEO.mp4` against a bare loop, in one run: frames/s and the overhead of the command's
frame loop, plus its peak memory on a short and on a long video (streaming: it should not grow).

The video is a synthetic scene clip (shapes moving across frames, dlcli.data.scenes.make_clip),
encoded to H.264 with PyAV. Both sides load the bundled fasterrcnn_small.scenes and run it on the
CPU in batches of 4 frames (the command's default), in this process, timed from the same start
(loading the model included on both sides):

- command: `dl detect clip.mp4 --model fasterrcnn_small.scenes --out out.mp4 --jsonl out.jsonl
  --json --quiet`, invoked through the real CLI (Typer's CliRunner): decode, model, thresholding,
  boxes drawn, JSONL written, H.264 encode;
- bare: the least a script must do for the same video: PyAV decode -> the same model -> PyAV
  H.264 encode of the frames (nothing drawn, nothing written beside the video).

Rounds alternate the two after one warm-up of each. Two measures: wall-clock frames/s, and frames
per CPU-second of this process (all its threads: decoder, encoder, torch). On a shared machine the
wall clock mostly measures the neighbours; CPU time measures the work each side does. Peak RSS is
measured on fresh processes (`python -m dlcli detect ...`, wait4's ru_maxrss) for the short clip
and a --long one.

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


def bare_loop(path: str, out: str) -> int:
    """Decode -> model -> encode, nothing else. Returns the frames processed."""
    import av

    from dlcli.device import Runtime
    from dlcli.tasks.detect import load_detector

    det = load_detector(Runtime.create("cpu", "fp32", None, False), model=MODEL, offline=True)
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
    return n


def command_in_process(path: Path, work: Path) -> int:
    """`dl detect` through the CLI, as a user types it. Returns the frames processed."""
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    result = CliRunner().invoke(app, ["detect", str(path), "--model", MODEL, "--offline", "--batch-size", str(BATCH),
                                      "--out", str(work / "cmd.mp4"), "--jsonl", str(work / "cmd.jsonl"), "--force",
                                      "--json", "--quiet"])
    if result.exit_code != 0:
        raise SystemExit(f"dl detect failed: {result.stderr or result.stdout}")
    return json.loads(result.stdout)["frames"]


def timed(fn, *args) -> tuple[float, float, int]:
    """(wall s, CPU s of this process, result) of one call."""
    w, c = time.perf_counter(), time.process_time()
    n = fn(*args)
    return time.perf_counter() - w, time.process_time() - c, n


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


def command_rss(path: Path, work: Path) -> float:
    """Peak RSS (MB) of `dl detect` on `path` in a fresh process."""
    _, rss = run_child(["-m", "dlcli", "detect", str(path), "--model", MODEL, "--offline", "--batch-size", str(BATCH),
                        "--out", str(work / "rss.mp4"), "--jsonl", str(work / "rss.jsonl"), "--force", "--quiet"])
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both sides)")
    parser.add_argument("--long", type=int, default=5000, help="frames of the long video for peak RSS (0: skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the RSS children
    import torch

    from dlcli import catalog

    torch.set_num_threads(args.threads)
    catalog.load()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        make_video(clip, args.frames, args.size)
        runs: dict[str, list[tuple[float, float]]] = {"command": [], "bare": []}
        sides = {"command": lambda: command_in_process(clip, work),
                 "bare": lambda: bare_loop(str(clip), str(work / "bare.mp4"))}
        for name, fn in sides.items():  # warm-up: first-call costs (lazy imports, encoder set-up)
            fn()
        for _ in range(args.rounds):
            for name, fn in sides.items():
                wall, cpu, n = timed(fn)
                assert n == args.frames, (name, n)
                runs[name].append((args.frames / wall, args.frames / cpu))
        med = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
               for name, rs in runs.items()}
        wall_ratio = med["command"][0] / med["bare"][0]
        cpu_ratio = med["command"][1] / med["bare"][1]
        result = {
            "video": f"{args.frames} frames, {args.size}x{args.size}, H.264", "model": MODEL, "batch": BATCH,
            "torch_threads": args.threads, "rounds": args.rounds,
            "command_fps": round(med["command"][0], 1), "bare_fps": round(med["bare"][0], 1),
            "command_over_bare_wall": round(wall_ratio, 3),
            "command_fps_per_cpu_s": round(med["command"][1], 1), "bare_fps_per_cpu_s": round(med["bare"][1], 1),
            "command_over_bare_cpu": round(cpu_ratio, 3),
            "overhead_percent_wall": round(100 * (1 / wall_ratio - 1), 1),
            "overhead_percent_cpu": round(100 * (1 / cpu_ratio - 1), 1),
            "per_round_fps": {k: [round(r[0], 1) for r in v] for k, v in runs.items()},
            "load_average": os.getloadavg()[0],
        }
        if args.long:
            long_clip = work / "long.mp4"
            make_video(long_clip, args.long, args.size)
            result["peak_rss_mb"] = {f"{args.frames} frames": round(command_rss(clip, work), 1),
                                     f"{args.long} frames": round(command_rss(long_clip, work), 1)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['video']}, {MODEL}, batches of {BATCH}, CPU, {args.threads} torch thread(s), "
          f"{args.rounds} rounds, load average {result['load_average']:.1f}")
    print(f"  dl detect (decode, model, boxes, JSONL, encode): {result['command_fps']:6.1f} frames/s, "
          f"{result['command_fps_per_cpu_s']:6.1f} frames per CPU-second")
    print(f"  bare loop (decode, model, encode):               {result['bare_fps']:6.1f} frames/s, "
          f"{result['bare_fps_per_cpu_s']:6.1f} frames per CPU-second")
    print(f"  overhead of the command: wall {result['overhead_percent_wall']:+.1f}%, "
          f"CPU {result['overhead_percent_cpu']:+.1f}% "
          f"(command/bare {result['command_over_bare_wall']:.3f} wall, {result['command_over_bare_cpu']:.3f} CPU; "
          "at most 10% wanted)")
    print(f"  per-round frames/s: {result['per_round_fps']}")
    if "peak_rss_mb" in result:
        print("  peak RSS of dl detect: " + ", ".join(f"{k}: {v:.0f} MB" for k, v in result["peak_rss_mb"].items()))


if __name__ == "__main__":
    main()
