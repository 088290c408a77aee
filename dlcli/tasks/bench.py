"""`dl bench NAME`: the same model run by torch (fp32, bf16 autocast) and by onnxruntime (the fp32
export, the int8 one), timed in ONE run with the runtimes interleaved round by round (so a busy
machine slows all of them alike), and scored on held-out data:

- digit models (the mnist preset) with `--data` holding the MNIST IDX files: errors on the test set;
- models trained on the synthetic scenes: mIoU on held-out scenes (test seed);
- other classifiers with `--data DIR` of images: top-1 agreement with torch fp32;
- generators and Q-networks: the largest difference from torch fp32's outputs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from dlcli.errors import InputError
from dlcli.progress import NullReporter, Reporter

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import BenchReport
    from dlcli.device import Runtime

RUNTIMES = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")
BASELINE = "torch-fp32"
MAX_BATCH = 1024
MAX_ROUNDS = 100
MAX_EVAL = 10_000  # held-out inputs are kept in memory (10,000 scenes: about 2 GB as float32)
BENCHED_TASKS = ("classify", "segment", "generate", "dqn")


def parse_runtimes(value: str | Sequence[str]) -> list[str]:
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if not names:
        raise InputError(f"--runtimes needs at least one of {', '.join(RUNTIMES)}")
    for n in names:
        if n not in RUNTIMES:
            raise InputError(f"unknown runtime {n!r} in --runtimes: use {', '.join(RUNTIMES)}")
    return list(dict.fromkeys(names))


def parse_batch_sizes(value: str | Sequence[int]) -> list[int]:
    try:
        sizes = [int(v) for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    except ValueError:
        raise InputError(f"--batch-size takes whole numbers separated by commas (got {value!r})") from None
    if not sizes or any(not 1 <= s <= MAX_BATCH for s in sizes):
        raise InputError(f"--batch-size values must be between 1 and {MAX_BATCH} (got {value!r})")
    return list(dict.fromkeys(sizes))


def cpu_description() -> str:
    """The CPU's model and the vector extensions that matter for int8 and bf16 (Linux; else the platform)."""
    import platform

    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
                 platform.machine())
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    named = [("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
             ("avx512_bf16", "AVX-512 BF16"), ("amx_int8", "AMX-INT8"), ("amx_bf16", "AMX-BF16")]
    have = [label for flag, label in named if flag in flags]
    return f"{model} ({', '.join(have) if have else 'no AVX2'})"


def _torch_runner(graph: Any, bf16: bool) -> Callable[[Any], Any]:
    import contextlib

    import torch

    def run(x: Any) -> Any:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            out = graph(torch.as_tensor(x))
        return out.float().numpy()

    return run


def _onnx_runner(path: Path, threads: int) -> Callable[[Any], Any]:
    from dlcli.export.runtime import OnnxModel

    model = OnnxModel(path, threads=threads)
    return lambda x: model.run(x)[0]


def _batch_of(example: Any, n: int) -> Any:
    """`n` inputs for timing: the example's first item repeated (values do not change the time)."""
    import numpy as np

    one = np.asarray(example[:1])
    return np.ascontiguousarray(np.repeat(one, n, axis=0))


def _time(run: Callable[[Any], Any], x: Any, min_seconds: float) -> float:
    """Seconds per call: enough calls to last `min_seconds`, so short calls are not timer noise."""
    calls, elapsed = 0, 0.0
    t0 = time.perf_counter()
    while elapsed < min_seconds or calls < 2:
        run(x)
        calls += 1
        elapsed = time.perf_counter() - t0
    return elapsed / calls


def bench(name: str, *, runtimes: Sequence[str] = ("torch-fp32", "onnx-fp32", "onnx-int8"),
          batch_sizes: Sequence[int] = (1, 8), data: str | Path | None = None, calibrate: str | None = None,
          calibration_size: int = 1000, eval_size: int | None = None, threads: int | None = None, rounds: int = 5,
          min_seconds: float = 0.2, offline: bool = False, reporter: Reporter | None = None,
          runtime: Runtime | None = None) -> BenchReport:
    """Time `name` under each runtime at each batch size and score each runtime once; a BenchReport."""
    import torch

    from dlcli.results import BenchAccuracy, BenchReport, BenchRow, Provenance
    from dlcli.tasks import export as ex
    from dlcli.weights import loader, registry

    reporter = reporter or NullReporter()
    runtimes = parse_runtimes(runtimes)
    batch_sizes = parse_batch_sizes(batch_sizes)
    if not 1 <= rounds <= MAX_ROUNDS:
        raise InputError(f"--rounds must be between 1 and {MAX_ROUNDS} (got {rounds})")
    if eval_size is not None and not 1 <= eval_size <= MAX_EVAL:
        raise InputError(f"--eval-size must be between 1 and {MAX_EVAL} (got {eval_size})")
    spec = registry.get(name)
    if spec.task not in BENCHED_TASKS:
        raise InputError(f"dl bench times {', '.join(BENCHED_TASKS)} models; {name} is a {spec.task} model")
    if any(r.startswith("onnx") for r in runtimes):
        from dlcli.export import require_onnx

        require_onnx()
    saved_threads = torch.get_num_threads()
    threads = int(threads or saved_threads)
    if not 1 <= threads <= 256:
        raise InputError(f"--threads must be between 1 and 256 (got {threads})")
    t_start = time.perf_counter()
    torch.set_num_threads(threads)
    try:
        loaded = loader.load_model(name, task=spec.task, offline=offline, reporter=reporter)
        plan = ex.plan_for(loaded)
        held_out = _held_out(loaded, plan, data, eval_size)
        runners: dict[str, Callable[[Any], Any]] = {}
        with tempfile.TemporaryDirectory(prefix="dl-bench-") as tmp:
            for rt in runtimes:
                if rt.startswith("torch"):
                    runners[rt] = _torch_runner(plan.graph, rt == "torch-bf16")
                elif rt == "onnx-fp32":
                    fp32 = ex.for_engine(loaded, "onnx", reporter=reporter, threads=threads)
                    runners[rt] = _onnx_runner(fp32.model.path, threads)
                else:
                    source = calibrate if calibrate is not None else held_out.calibration
                    int8_path = Path(tmp) / "int8.onnx"
                    ex.export_loaded(loaded, fmt="onnx", out=int8_path, int8=True, calibrate=source,
                                     calibration_size=calibration_size, force=True, offline=offline,
                                     reporter=reporter)
                    runners[rt] = _onnx_runner(int8_path, threads)
            inputs = {bs: _batch_of(held_out.timing_input, bs) for bs in batch_sizes}
            for rt in runtimes:  # warm-up: first calls allocate and pick kernels
                for bs in batch_sizes:
                    runners[rt](inputs[bs])
            times: dict[tuple[str, int], list[float]] = {(rt, bs): [] for rt in runtimes for bs in batch_sizes}
            reporter.start(f"timing {name} ({threads} thread{'s' if threads > 1 else ''})", float(rounds))
            try:
                for _ in range(rounds):
                    for bs in batch_sizes:
                        for rt in runtimes:
                            times[(rt, bs)].append(_time(runners[rt], inputs[bs], min_seconds))
                    reporter.advance(1)
            finally:
                reporter.finish()
            accuracy = held_out.score(runners, reporter)
    finally:
        torch.set_num_threads(saved_threads)
    rows = []
    for bs in batch_sizes:
        base = statistics.median(times[(BASELINE, bs)]) if BASELINE in runtimes else None
        for rt in runtimes:
            t = statistics.median(times[(rt, bs)])
            rows.append(BenchRow(rt, bs, round(t * 1000, 4), round(bs / t, 1), round(base / t, 3) if base else None))
    base_value = next((a[1] for a in accuracy if a[0] == BASELINE), None)
    scored = tuple(BenchAccuracy(rt, held_out.metric, value,
                                 None if rt == BASELINE or base_value is None or value is None else value - base_value,
                                 held_out.n) for rt, value in accuracy)
    return BenchReport(model=name, threads=threads, rounds=rounds, rows=tuple(rows), accuracy=scored,
                       data=held_out.described, cpu=cpu_description(), seconds=round(time.perf_counter() - t_start, 1),
                       provenance=Provenance.collect(runtime, name, loaded.sha256))


class HeldOut:
    """What a model is scored on, the input it is timed on, and its default calibration source."""

    metric = "max abs diff"

    def __init__(self, timing_input: Any, described: str | None, n: int, calibration: str | None,
                 scorer: Callable[[Callable[[Any], Any]], float] | None = None, metric: str | None = None,
                 batches: list[Any] | None = None) -> None:
        self.timing_input = timing_input
        self.described = described
        self.n = n
        self.calibration = calibration
        self.scorer = scorer
        self.batches = batches or []
        if metric:
            self.metric = metric

    def score(self, runners: dict[str, Callable[[Any], Any]], reporter: Reporter) -> list[tuple[str, float | None]]:
        """(runtime, value) for each runtime: the scorer's metric, or for models without held-out
        data the largest difference from torch fp32 (agreement with fp32 for classifiers on images)."""
        import numpy as np

        reporter.start(f"scoring on {self.described or 'the timing inputs'}", float(len(runners)))
        try:
            if self.scorer is not None:
                out = []
                for rt, run in runners.items():
                    out.append((rt, self.scorer(run)))
                    reporter.advance(1)
                return out
            reference_run = runners.get(BASELINE)
            if reference_run is None:
                return [(rt, None) for rt in runners]
            reference = [np.asarray(reference_run(b), dtype=np.float64) for b in self.batches]
            out = []
            for rt, run in runners.items():
                got = [np.asarray(run(b), dtype=np.float64) for b in self.batches]
                if self.metric == "top-1 agreement":
                    same = np.concatenate([g.argmax(1) == r.argmax(1) for g, r in zip(got, reference)])
                    out.append((rt, float(same.mean())))
                else:
                    out.append((rt, max(float(np.abs(g - r).max()) for g, r in zip(got, reference))))
                reporter.advance(1)
            return out
        finally:
            reporter.finish()


def _held_out(loaded: Any, plan: Any, data: str | Path | None, eval_size: int | None) -> HeldOut:
    import numpy as np
    import torch

    from dlcli.data import scenes

    spec = loaded.spec
    scene_model = spec.preprocess == "tensor01" and tuple(spec.labels or ()) == tuple(scenes.CLASS_NAMES)
    if spec.preprocess == "mnist" and data is not None:
        from dlcli.data import mnist

        if mnist.locate(data) is not None:
            images, labels = mnist.load_mnist(data, "test")
            n = min(eval_size or len(labels), len(labels))
            x = images[:n].unsqueeze(1).float().div_(255.0).numpy()
            y = labels[:n].numpy()

            def errors(run: Callable[[Any], Any]) -> float:
                pred = np.concatenate([np.asarray(run(x[i:i + 500])).argmax(1) for i in range(0, n, 500)])
                return float((pred != y).sum())

            return HeldOut(x[:1], f"MNIST test set ({n} images)", n, str(data), errors, "errors")
    if scene_model and spec.task == "segment":
        from PIL import Image

        from dlcli.evaluation.segmentation import ConfusionMatrix

        n = eval_size or 200
        samples = [scenes.make_scene(scenes.TEST_SEED, i) for i in range(n)]
        assert plan.transform is not None
        x = np.stack([plan.transform(Image.fromarray(s.image)).numpy() for s in samples])
        masks = np.stack([s.semantic for s in samples])

        def miou(run: Callable[[Any], Any]) -> float:
            cm = ConfusionMatrix(len(scenes.CLASS_NAMES), ignore_index=255)
            for i in range(0, n, 16):
                cm.update(masks[i:i + 16], np.asarray(run(x[i:i + 16])).argmax(1))
            return cm.mean_iou()

        return HeldOut(x[:1], f"{n} held-out scenes (test seed {scenes.TEST_SEED})", n, "scenes", miou, "mIoU")
    if spec.task == "classify" and data is not None:
        from dlcli import media

        assert plan.transform is not None
        files = media.expand_inputs([str(data)])[: eval_size or None]
        tensors = []
        for item in media.iter_images(files, mode=plan.mode, strict=False):
            if isinstance(item, Exception):
                continue
            try:
                tensors.append(plan.transform(item.image))
            except Exception:  # a preset that cannot take this picture: skipped, as classify does
                continue
        if not tensors:
            raise InputError(f"--data {data}: no usable image to score on")
        if len({tuple(t.shape) for t in tensors}) > 1:
            batches = [t[None].numpy() for t in tensors]
        else:
            stacked = torch.stack(tensors).numpy()
            batches = [stacked[i:i + 32] for i in range(0, len(stacked), 32)]
        return HeldOut(batches[0], f"{len(tensors)} images in {data} (vs {BASELINE})",
                       len(tensors), str(data), metric="top-1 agreement", batches=batches)
    if data is not None:
        raise InputError(f"--data is for digit models (MNIST IDX files) and classifiers (a folder of images); "
                         f"{spec.name} is scored against {BASELINE} on generated inputs instead")
    example = plan.examples[0].numpy()
    calibration = "scenes" if scene_model else None
    return HeldOut(example, f"{len(plan.examples)} generated inputs (max abs diff from {BASELINE})",
                   sum(int(e.shape[0]) for e in plan.examples), calibration,
                   batches=[e.numpy() for e in plan.examples])
