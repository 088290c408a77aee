"""Which int8 recipe to ship, and what `--runtime onnx` buys end to end — each measured against
its baseline in the same run.

1. Quantisation variants of deepconvnet.mnist (onnxruntime's quantize_static: QDQ or QOperator
   format, per-channel or per-tensor weights; uint8 activations, min/max calibration on the
   first N MNIST training images): test-set errors and images/s at each batch size, timed in
   interleaved rounds with torch fp32 and the ONNX fp32 graph (median of the rounds).
2. `dl classify samples/digits --model deepconvnet.mnist --batch-size 1` as a subprocess, with
   `--runtime torch` and `--runtime onnx` alternately (the ONNX export cached first): wall time
   of the whole command (start-up included), the time of the classification itself, whether the
   command imported torch, and the start-up floors (the interpreter; `dl --version`).

    python benchmarks/export_speed.py --data /path/to/MNIST/raw --threads 1
    python benchmarks/export_speed.py --skip-variants --threads 1 --repeats 9   # end to end only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def first_output(model):
    return lambda b: model.run(b)[0]


def variants(data: Path, threads: int, rounds: int, batch_sizes: list[int], calibration: int) -> None:
    import numpy as np
    import torch

    from dlcli import catalog
    from dlcli.data import mnist
    from dlcli.export.runtime import OnnxModel
    from dlcli.tasks import export as ex
    from dlcli.tasks.bench import _time
    from dlcli.weights import loader

    catalog.load()  # the registry's names (the registry itself imports no task)
    torch.set_num_threads(threads)
    loaded = loader.load_model("deepconvnet.mnist", task="classify")
    images, labels = mnist.load_mnist(data, "test")
    x = images.unsqueeze(1).float().div_(255.0).numpy()
    y = labels.numpy()
    runners = {}
    model = loaded.model.eval()

    def torch_run(b: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(b)).numpy()

    runners["torch fp32"] = torch_run
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        ex.export_loaded(loaded, out=fp32)
        runners["onnx fp32"] = first_output(OnnxModel(fp32, threads=threads))
        for fmt in ("qdq", "qoperator"):
            for per_channel in (True, False):
                path = Path(tmp) / f"{fmt}-{per_channel}.onnx"
                t0 = time.perf_counter()
                ex.export_loaded(loaded, out=path, int8=True, calibrate=str(data), calibration_size=calibration,
                                 quant_format=fmt, per_channel=per_channel)
                name = f"int8 {fmt} {'per-channel' if per_channel else 'per-tensor'}"
                print(f"{name}: quantised in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
                runners[name] = first_output(OnnxModel(path, threads=threads))
        errors = {}
        for name, run in runners.items():
            pred = np.concatenate([run(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
            errors[name] = int((pred != y).sum())
        times: dict[tuple[str, int], list[float]] = {}
        batches = {bs: np.ascontiguousarray(x[:bs]) for bs in batch_sizes}
        for _ in range(rounds):
            for bs in batch_sizes:
                for name, run in runners.items():
                    times.setdefault((name, bs), []).append(_time(run, batches[bs], 0.3))
    print(f"\ndeepconvnet.mnist, {threads} thread(s), {calibration} calibration images, median of {rounds} rounds")
    header = f"{'variant':<26}{'errors':>7}" + "".join(f"{'img/s b' + str(bs):>13}{'/torch':>8}{'/onnx':>7}"
                                                       for bs in batch_sizes)
    print(header)
    for name in runners:
        line = f"{name:<26}{errors[name]:>7}"
        for bs in batch_sizes:
            ips = bs / statistics.median(times[(name, bs)])
            base_t = bs / statistics.median(times[("torch fp32", bs)])
            base_o = bs / statistics.median(times[("onnx fp32", bs)])
            line += f"{ips:>13,.0f}{ips / base_t:>7.2f}x{ips / base_o:>6.2f}x"
        print(line)


def end_to_end(threads: int, repeats: int) -> None:
    """Both runtimes' whole command, alternated (torch, onnx, torch, onnx, …) so that whatever else
    the machine does falls on both alike; medians. The floors beside them: the interpreter alone,
    and `dl --version` (the CLI's own start-up, which every command pays before doing anything)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    digits = str(ROOT / "samples" / "digits")
    # Runs the CLI as `python -m dlcli` does, then says on stderr whether torch was imported.
    probe = ("import runpy, sys; sys.argv = ['dl', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('dlcli', run_name='__main__')\n"
             "finally:\n    sys.stderr.write('TORCH_IMPORTED=%s\\n' % ('torch' in sys.modules))")

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def run(engine: str) -> tuple[float, float, float, list[tuple[str, float]], bool]:
        cmd = [sys.executable, "-c", probe, "classify", digits, "--model", "deepconvnet.mnist", "--batch-size",
               "1", "--top-k", "1", "--json", "--quiet", "--runtime", engine]
        c0, t0 = cpu(), time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        wall, cpu_s = time.perf_counter() - t0, cpu() - c0
        report = json.loads(done.stdout)
        top = [(im["predictions"][0]["label"], im["predictions"][0]["probability"]) for im in report["images"]]
        return wall, cpu_s, report["seconds"], top, "TORCH_IMPORTED=True" in done.stderr

    def floor(args: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, env=env, check=True)
        return time.perf_counter() - t0

    run("onnx")  # the first --runtime onnx exports into the cache (if it is not there yet); not timed
    run("torch")  # and the first torch run warms the file cache for torch's libraries; not timed
    walls: dict[str, list[float]] = {"torch": [], "onnx": []}
    cpus: dict[str, list[float]] = {"torch": [], "onnx": []}
    inner: dict[str, list[float]] = {"torch": [], "onnx": []}
    floors: dict[str, list[float]] = {"python -c pass": [], "dl --version": []}
    tops: dict[str, list[tuple[str, float]]] = {}
    imported: dict[str, bool] = {}
    for _ in range(repeats):
        for engine in ("torch", "onnx"):
            wall, cpu_s, seconds, tops[engine], imported[engine] = run(engine)
            walls[engine].append(wall)
            cpus[engine].append(cpu_s)
            inner[engine].append(seconds)
        floors["python -c pass"].append(floor(["-c", "pass"]))
        floors["dl --version"].append(floor(["-m", "dlcli", "--version"]))
    n = len(tops["torch"])
    print(f"\ndl classify samples/digits --model deepconvnet.mnist --batch-size 1 ({n} images, {threads} thread(s)), "
          f"runtimes alternated, median of {repeats} runs each")
    for engine in ("torch", "onnx"):
        print(f"--runtime {engine:<6} whole command {statistics.median(walls[engine]):.3f} s "
              f"(CPU {statistics.median(cpus[engine]):.3f} s), "
              f"classification {statistics.median(inner[engine]) * 1000:.1f} ms, torch imported: {imported[engine]}, "
              f"labels {' '.join(label for label, _ in tops[engine])}")
    for what, times in floors.items():
        print(f"floor: {what:<15} {statistics.median(times):.3f} s")
    same = [a for a, _ in tops["torch"]] == [b for b, _ in tops["onnx"]]
    diff = max(abs(p - q) for (_, p), (_, q) in zip(tops["torch"], tops["onnx"]))
    print(f"onnx / torch: whole command {statistics.median(walls['torch']) / statistics.median(walls['onnx']):.2f}x "
          f"(CPU time {statistics.median(cpus['torch']) / statistics.median(cpus['onnx']):.2f}x), "
          f"classification {statistics.median(inner['torch']) / statistics.median(inner['onnx']):.2f}x faster; "
          f"same labels: {same}, top-1 probabilities within {diff:.1e}")


# Where a torch-free `dl classify --runtime onnx` spends its time: the command's steps, one after
# the other, timed in a fresh interpreter (what each adds to those before it; imports shared by two
# steps count in the first).
PHASES = r"""
import json, sys, time
t = [time.perf_counter()]
import dlcli.cli.app  # the CLI: Typer, click, every command's options
t.append(time.perf_counter())
from dlcli import catalog; catalog.load()  # the registry's task modules and the manifest
t.append(time.perf_counter())
from dlcli import render  # Rich and the result types
t.append(time.perf_counter())
import numpy
t.append(time.perf_counter())
import onnxruntime
t.append(time.perf_counter())
from dlcli.export.runtime import CpuRuntime
from dlcli.tasks import classify as task
from dlcli.tasks.export import cached_export
loaded = cached_export("classify", model="deepconvnet.mnist")  # registry, SHA-256, the session
assert loaded is not None, "no cached export"
t.append(time.perf_counter())
rt = CpuRuntime.create()
report = task.classify([sys.argv[1]], rt, classifier=task.OnnxClassifier(loaded, rt), top_k=1, batch_size=1)
t.append(time.perf_counter())
json.dumps(report.to_dict())
t.append(time.perf_counter())
print(json.dumps({"steps": [b - a for a, b in zip(t, t[1:])], "torch": "torch" in sys.modules}))
"""
PHASE_NAMES = ("the CLI (typer, click, command options)", "registry: task modules + manifest", "rich + result types",
               "numpy", "onnxruntime", "cached export: resolve, SHA-256, session", "classify 7 images (PIL, presets, runs)",
               "JSON of the report")


def phases(threads: int, repeats: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    digits = str(ROOT / "samples" / "digits")
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", PHASES, digits], capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(done.stdout))
    assert not any(r["torch"] for r in runs)
    print(f"\nwhere --runtime onnx spends its time after the interpreter's start (median of {repeats} fresh processes):")
    total = 0.0
    for i, name in enumerate(PHASE_NAMES):
        t = statistics.median(r["steps"][i] for r in runs)
        total += t
        print(f"  {t * 1000:7.1f} ms  {name}")
    print(f"  {total * 1000:7.1f} ms  in all")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="folder with the MNIST IDX files (for the quantisation variants)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", default="1,64")
    ap.add_argument("--calibration-size", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=9, help="end-to-end runs per runtime")
    ap.add_argument("--skip-variants", action="store_true")
    ap.add_argument("--skip-end-to-end", action="store_true")
    args = ap.parse_args()
    if not args.skip_variants:
        if args.data is None:
            ap.error("--data is needed for the quantisation variants (or pass --skip-variants)")
        variants(args.data, args.threads, args.rounds, [int(b) for b in args.batch_size.split(",")],
                 args.calibration_size)
    if not args.skip_end_to_end:
        end_to_end(args.threads, args.repeats)
        phases(args.threads, args.repeats)


if __name__ == "__main__":
    main()
