"""Results -> Rich tables or JSON on stdout; progress and notices on stderr. The only place
output is shaped (besides files a task writes on request)."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.markup import escape
from rich.table import Table

from dlcli import results


def stdout() -> Console:
    # Built on each call so that tests capturing sys.stdout see the output.
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)


def emit_json(data: Any) -> None:
    """JSON on stdout, nothing else there (so `--json | jq` works)."""
    sys.stdout.write(to_json(data) + "\n")
    sys.stdout.flush()


def emit_jsonl(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n")
    sys.stdout.flush()


def fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if value is None:
        return "-"
    return str(value)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          justify: Sequence[str] | None = None) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for i, col in enumerate(columns):
        t.add_column(col, justify=(justify[i] if justify else "left"))  # type: ignore[arg-type]
    for row in rows:
        t.add_row(*(fmt(v) for v in row))
    return t


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                justify: Sequence[str] | None = None) -> None:
    stdout().print(table(title, columns, rows, justify))


def key_values(title: str | None, data: dict[str, Any]) -> None:
    print_table(title, ["", ""], [(k, v) for k, v in data.items()])


def notice(text: str, quiet: bool = False) -> None:
    if not quiet:
        stderr().print(f"[dim]{escape(text)}[/]")


class RichReporter:
    """The Reporter (dlcli/progress.py) the CLI hands to library code: a bar with ETA and the
    latest metrics on stderr; `quiet` hides bars and notices."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or stderr()
        self._progress: Progress | None = None
        self._task: Any = None
        self._header: list[str] | None = None

    def start(self, description: str, total: float | None = None, unit: str = "") -> None:
        self.finish()
        if self.quiet:
            return
        columns: list[Any] = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn()]
        columns.append(MofNCompleteColumn() if unit != "B" else TextColumn("{task.percentage:>3.0f}%"))
        columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}")]
        self._progress = Progress(*columns, console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, metrics="")

    def advance(self, n: float = 1, **metrics: Any) -> None:
        if self._progress is None:
            return
        text = "  ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
        if metrics:
            self._progress.update(self._task, advance=n, metrics=text)
        else:
            self._progress.update(self._task, advance=n)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def message(self, text: str) -> None:
        if not self.quiet:  # plain text: 'pip install "dlcli[plots]"' must keep its brackets
            self.console.print(f"[dim]{escape(text)}[/]")

    def row(self, values: dict[str, Any]) -> None:
        """Rows of a table printed as they come (stderr): one header, aligned columns."""
        if self.quiet:
            return
        keys = list(values)
        if self._header != keys:
            self._header = keys
            self.console.print("  ".join(f"[bold]{k:>10}[/]" for k in keys))
        self.console.print("  ".join(f"{fmt(values[k]):>10}" for k in keys))


# --- foundation: dl doctor, dl weights --------------------------------------------------------


def render_doctor(report: results.DoctorReport) -> None:
    out = stdout()
    out.print(table("Versions", ["package", "version"], [(k, v or "not installed") for k, v in report.versions.items()]))
    out.print(table("Devices", ["device", "name", "matmul", "ms", "fp16", "bf16"],
                    [(d.device, d.name, "ok" if d.matmul_ok else f"FAILED {d.error}", d.matmul_ms,
                      "yes" if d.fp16 else "no", "yes" if d.bf16 else "no") for d in report.devices]))
    out.print(table("Paths", ["", ""], [
        ("cache ($DL_HOME)", f"{report.cache_dir} ({'writable' if report.cache_writable else 'NOT writable'})"),
        ("torchvision ($TORCH_HOME)", report.torch_home),
        ("bundled weights", report.bundled_dir),
        ("offline (DL_OFFLINE)", "yes" if report.offline else "no"),
        ("platform", f"{report.platform}, {report.cpu_threads} threads"),
    ]))
    out.print(table("Weights", ["name", "task", "source", "state"],
                    [(w.name, w.task, w.source, w.state) for w in report.weights]))
    out.print(table("Atari", ["", ""], [(k, v) for k, v in report.atari.items()]))
    if getattr(report, "problems", None):
        out.print(table("Problems", ["refused as corrupt or unreadable"], [(p,) for p in report.problems]))


def render_weights_list(found: results.WeightsList) -> None:
    rows = []
    for e in found.record:
        metric = ", ".join(f"{k} {fmt(v)}" for k, v in list((e.get("metrics") or {}).items())[:2])
        rows.append((e["name"] + (" *" if e["default"] else ""), e["task"], e["source"]["kind"], e["state"], metric))
    print_table("Weights (* = default for its task)", ["name", "task", "source", "state", "metrics"], rows)


def render_verify(report: results.VerifyReport) -> None:
    print_table("Verify", ["name", "ok", "sha256 / problem"],
                [(r["name"], "ok" if r["ok"] else "FAILED", r["detail"]) for r in report.record])


def render_record(record: results.Record) -> None:
    key_values(record.title, {k: v for k, v in record.record.items() if k != "name"})


def render_line(line: results.Line, quiet: bool = False) -> None:
    if line.remark:
        notice(line.text, quiet)
    else:  # the answer itself (a path for a script): --quiet keeps it
        stdout().print(line.text, highlight=False, markup=False, soft_wrap=True)


# --- classify, summary, profile (issue 4) ------------------------------------------------------


def render_classify_result(result: results.ClassifyResult) -> None:
    """One image: rank, label, probability."""
    print_table(result.source, ["rank", "label", "probability"],
                [(p.rank, p.label, f"{p.probability:.4f}") for p in result.predictions],
                justify=["right", "left", "right"])


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def render_summary(summary: results.ModelSummary) -> None:
    out = stdout()
    rows = [(l.name, l.type, "x".join(str(d) for d in l.output_shape), _count(l.params) if l.params else "",
             _count(l.macs) if l.macs else "",
             "global" if l.receptive_field is None else f"{l.receptive_field}x{l.receptive_field}")
            for l in summary.layers]
    layer_table = table(f"{summary.model}, input {'x'.join(str(d) for d in summary.input_shape)}",
                        ["layer", "type", "output", "params", "MACs", "receptive field"], rows,
                        justify=["left", "left", "right", "right", "right", "right"])
    for column in layer_table.columns:
        column.overflow = "fold"  # long layer names wrap instead of losing their end to an ellipsis
    out.print(layer_table)
    out.print(table(None, ["total params", "trainable", "MACs (conv + linear)"],
                    [(f"{summary.total_params:,}", f"{summary.trainable_params:,}", f"{summary.total_macs:,}")]))
    out.print(table("Stacked 3x3 convs vs one big kernel (weights per input/output channel pair)",
                    ["3x3 convs", "receptive field", "weights (stacked)", "weights (one kernel)", "saved"],
                    [(s.convs, f"{s.receptive_field}x{s.receptive_field}", s.weights_stacked, s.weights_single,
                      f"{1 - s.weights_stacked / s.weights_single:.0%}") for s in summary.stacked_3x3],
                    justify=["right"] * 5))


def render_profile(report: results.ProfileReport) -> None:
    out = stdout()
    title = (f"{report.model}, input {'x'.join(str(d) for d in report.input_shape)} on "
             f"{report.provenance.device} ({report.provenance.dtype}); forward {report.forward_ms:.2f} ms "
             f"(median of {report.repeats}, {report.warmup} warm-up)")
    out.print(table(title, ["layer type", "ms per pass", "share", "calls"],
                    [(c.category, f"{c.ms:.3f}", f"{c.share:.1%}", c.calls) for c in report.categories],
                    justify=["left", "right", "right", "right"]))
    out.print(table("By module class", ["module", "ms per pass", "share", "calls"],
                    [(c.category, f"{c.ms:.3f}", f"{c.share:.1%}", c.calls) for c in report.layer_types],
                    justify=["left", "right", "right", "right"]))


# --- caption (issue 6) -------------------------------------------------------------------------


def render_caption_report(report: results.CaptionReport, all_candidates: bool = False) -> None:
    """One row per image (best caption); with all_candidates, every beam candidate below it."""
    rows: list[tuple[Any, ...]] = []
    for item in report.images:
        shown = item.candidates if all_candidates else item.candidates[:1]
        for rank, c in enumerate(shown, 1):
            rows.append((item.source if rank == 1 else "", rank, c.caption + ("" if c.finished else " …"),
                         f"{c.log_prob:.3f}"))
    print_table(f"{report.model} · beam {report.beam_size} · max {report.max_length} words",
                ["image", "#", "caption", "log-prob"], rows, justify=["left", "right", "left", "right"])


def render_caption_eval(report: results.CaptionEvalReport) -> None:
    out = stdout()
    out.print(table(f"{report.model} on {report.data} (beam {report.beam_size})",
                    ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"],
                    [tuple(f"{report.bleu[f'bleu{n}']:.4f}" for n in range(1, 5))], justify=["right"] * 4))
    if report.examples:
        out.print(table("Examples", ["#", "caption", "reference"],
                        [(e["index"], e["caption"], e["references"][0]) for e in report.examples]))


# --- stylize, generate (issue 7) ----------------------------------------------------------------


def render_stylize(result: results.StylizeResult) -> None:
    out = stdout()
    i, f = result.initial_losses, result.final_losses
    out.print(table(None, ["loss", "start", "end"], [(k, i.get(k), f.get(k)) for k in ("content", "style", "tv", "total")],
                    justify=["left", "right", "right"]))
    for snap in result.snapshots:
        out.print(f"[dim]snapshot {snap}[/]")
    out.print(f"wrote {result.output} ({result.width}x{result.height}) · {result.steps} {result.optimizer} steps in "
              f"{result.seconds['optimize']:.1f} s ({result.seconds['per_step']:.3f} s/step) · "
              f"[dim]{result.provenance.weights} · {result.provenance.device} · {result.provenance.dtype}[/]")


def _engine(provenance: Any) -> str:
    """The device for torch runs, onnxruntime's version and precision for exported files."""
    return provenance.device if provenance.engine == "torch" else provenance.engine


def render_generate(result: results.GenerateResult) -> None:
    out = stdout()
    for path in result.files:
        out.print(f"wrote {path}")
    what = (f"{result.n} samples" if result.kind == "grid" else
            f"a walk through {result.interpolate} latent points")
    out.print(f"[dim]{result.model} · seed {result.seed} · {what} · {result.seconds:.2f} s · "
              f"{_engine(result.provenance)}[/]")


def render_generate_train(result: results.GenerateTrainResult) -> None:
    out = stdout()
    if result.history:
        cols = list(result.history[0])
        out.print(table("DCGAN training", cols, [[row.get(c) for c in cols] for row in result.history]))
    out.print(f"wrote {result.weights_file} (sha256 {result.sha256[:12]}…) · {result.epochs} epochs, {result.steps} steps "
              f"in {result.seconds:.0f} s; samples in {result.out_dir / 'samples'}")
    out.print(f"[dim]use it: dl generate --weights-file {result.weights_file} --out grid.png[/]")


# --- play-dqn (issue 8) -------------------------------------------------------------------------


def render_dqn_play(result: results.DQNPlayResult) -> None:
    out = stdout()
    out.print(f"[dim]{result.game} ({result.env}) · protocol: {result.protocol}[/]")
    policies = [result.agent] + ([result.random] if result.random is not None else [])
    for scores in policies:
        out.print(table(f"{scores.policy}: {len(scores.episodes)} game(s)", ["game", "score", "steps", "seconds"],
                        [(e.episode, e.score, e.steps, e.seconds) for e in scores.episodes],
                        justify=["right"] * 4))
    out.print(table(None, ["policy", "mean", "std", "min", "max"],
                    [(s.policy, round(s.mean, 2), round(s.std, 2), s.min, s.max) for s in policies],
                    justify=["left"] + ["right"] * 4))
    if result.ratio_vs_random is not None:
        out.print(f"agent / random mean score: [bold]{result.ratio_vs_random:.2f}x[/]")
    if result.recording:
        out.print(f"recorded game 1 to {result.recording}")
    out.print(f"[dim]{result.provenance.weights} · {result.provenance.device} · {result.seconds:.1f} s[/]")


def render_dqn_train(report: results.DQNTrainReport) -> None:
    out = stdout()
    if report.evaluations:
        out.print(table("evaluations (epsilon 0.05, full games)", ["step", "mean", "std", "games"],
                        [(e["step"], e["eval_mean"], e["eval_std"], e["eval_episodes"]) for e in report.evaluations],
                        justify=["right"] * 4))
    out.print(table(f"DQN on {report.env}", ["", ""], [
        ("steps", f"{report.steps:,} ({report.steps_per_second:.1f} steps/s)"),
        ("games", report.episodes),
        ("mean score, last 100 games", report.mean_return_100),
        ("best evaluation", report.best_eval),
        ("last weights", str(report.final_weights)),
        ("best weights", str(report.best_weights) if report.best_weights else "-"),
        ("time", f"{report.seconds:.0f} s"),
    ]))
    out.print(f"[dim]play it: dl play-dqn --weights-file {report.best_weights or report.final_weights} --episodes 10[/]")


# --- detect, segment (issue 5) ------------------------------------------------------------------


def render_detect(report: results.DetectReport) -> None:
    from pathlib import Path

    out = stdout()
    for item in report.images:
        rows = [(d.label, f"{d.score:.3f}", ", ".join(f"{v:.1f}" for v in d.box)) for d in item.detections]
        title = f"{item.source} ({item.width}x{item.height}): {len(item.detections)} object(s)"
        if rows:
            out.print(table(title, ["label", "score", "box x0, y0, x1, y1"], rows, ["left", "right", "left"]))
        else:
            out.print(f"[bold]{title}[/] [dim](nothing above threshold {report.threshold})[/]")
        for kind, path in item.files.items():
            if kind == "crops":
                if path:
                    out.print(f"[dim]  {len(path)} crop(s) in {Path(path[0]).parent}[/]")
            else:
                out.print(f"[dim]  {kind}: {path}[/]")
    out.print(f"[dim]{report.model} · {report.provenance.device} · {report.provenance.dtype} · "
              f"{len(report.images)} image(s) in {report.seconds:.2f} s[/]")


def render_detect_eval(report: results.DetectEvalReport) -> None:
    rows = [(label, v["ap50"], v["ap50_95"]) for label, v in report.per_class.items()]
    rows.append(("[bold]mean[/]", report.map50, report.map50_95))
    stdout().print(table(f"{report.model} on {report.data} ({report.ground_truth} objects)",
                         ["class", "AP@0.5", "AP@0.5:0.95"], rows, ["left", "right", "right"]))
    if report.coco:
        c = {k: (None if v is None or v != v else v) for k, v in report.coco.items()}  # NaN: no object of that size
        summary = [
            ("AP", c["AP"], c["AP50"], c["AP75"], c["AP_small"], c["AP_medium"], c["AP_large"]),
            ("AR", c["AR100"], "-", "-", c["AR_small"], c["AR_medium"], c["AR_large"]),
        ]
        stdout().print(table(f"COCOeval summary (AR@1 {fmt(c['AR1'])}, AR@10 {fmt(c['AR10'])})",
                             ["", "@0.5:0.95", "@0.5", "@0.75", "small", "medium", "large"], summary,
                             ["left"] + ["right"] * 6))


def render_segment(report: results.SegmentReport) -> None:
    out = stdout()
    for item in report.images:
        rows = [(c.label, c.pixels, f"{c.share:.1%}") for c in item.classes]
        out.print(table(f"{item.source} ({item.width}x{item.height})", ["class", "pixels", "share"], rows,
                        ["left", "right", "right"]))
        for kind, path in item.files.items():
            out.print(f"[dim]  {kind}: {path}[/]")
    where = (f"{report.provenance.device} · {report.provenance.dtype}" if report.provenance.engine == "torch"
             else report.provenance.engine)
    out.print(f"[dim]{report.model} · {where} · {len(report.images)} image(s) in {report.seconds:.2f} s[/]")


def render_segment_eval(report: results.SegmentEvalReport) -> None:
    rows = [(label, iou) for label, iou in report.per_class_iou.items()]
    rows.append(("[bold]mIoU[/]", report.miou))
    rows.append(("[bold]pixel accuracy[/]", report.pixel_accuracy))
    stdout().print(table(f"{report.model} on {report.data}", ["class", "IoU"], rows, ["left", "right"]))


def render_vision_train(report: results.VisionTrainReport, usage: str) -> None:
    rows = [(k, v) for k, v in report.metrics.items()]
    rows += [("epochs", report.epochs), ("best weights", report.best), ("time", f"{report.seconds:.1f} s")]
    if report.registered:
        rows.append(("stored as", report.registered))
        rows.append(("use it", f"{usage} --model {report.registered}"))
    else:
        rows.append(("use it", f"{usage} --weights-file {report.best}"))
    print_table(f"trained ({report.task}) in {report.out}", ["", ""], rows)


# --- train-mnist (issue 3) ---------------------------------------------------------------------


def _mnist_confusion(confusion: Any, pairs: Any) -> None:
    out = stdout()
    out.print(table("Confusion matrix (rows: true digit, columns: predicted)", [""] + [str(d) for d in range(10)],
                    [(str(i), *row) for i, row in enumerate(confusion)], justify=["right"] * 11))
    if pairs:
        out.print(table("Most confused pairs", ["pair", "errors", "one way", "other way"],
                        [(p["pair"], p["count"], *[f"{k} {v}" for k, v in p.items() if "->" in k]) for p in pairs]))


def render_mnist_train(report: results.MnistTrainReport) -> None:
    out = stdout()
    if report.ensemble > 1:
        out.print(table("Ensemble members", ["seed", "test acc", "errors", "best acc", "best epoch"],
                        [(m["seed"], f"{m['test_acc']:.4f}", m["test_errors"], f"{m['best_acc']:.4f}", m["best_epoch"])
                         for m in report.members]))
    _mnist_confusion(report.confusion, report.confused_pairs)
    what = f"ensemble of {report.ensemble}" if report.ensemble > 1 else "final"
    lines = [f"test accuracy ({what}): {report.accuracy:.2%} ({report.errors} errors of {report.n})"]
    if report.weights:
        lines.append(f"weights: {report.weights}  (dl classify IMAGE --weights-file {report.weights})")
    if report.misclassified:
        lines.append(f"misclassified digits: {report.misclassified}")
    lines.append(f"time: {report.seconds:.0f} s")
    for line in lines:
        out.print(line)


def render_mnist_eval(report: results.MnistEvalReport) -> None:
    _mnist_confusion(report.confusion, report.confused_pairs)
    out = stdout()
    out.print(f"test accuracy: {report.accuracy:.2%} ({report.errors} errors of {report.n}), "
              f"{report.images_per_s:,.0f} images/s ({report.provenance.dtype} on {report.provenance.device})")
    if report.misclassified:
        out.print(f"misclassified digits: {report.misclassified}")


def render_export(report: results.ExportReport) -> None:
    rows: list[tuple[str, Any]] = [
        ("file", f"{report.file} ({_count(report.bytes)}B, {report.format} {report.precision})"),
        ("sha256", report.sha256),
        ("weights", f"{report.model} ({report.task})"),
        ("weights sha256", report.source_sha256 or "none (random init)"),
    ]
    if report.sidecar is not None:
        rows.append(("metadata", report.sidecar))
    for check in report.checks:
        bound = "" if check.tolerance is None else f" (<= {check.tolerance:g})"
        agree = "" if check.top1_agreement is None else f", top-1 agreement {check.top1_agreement:.2%}"
        rows.append((f"{check.what} vs torch", f"max abs diff {check.max_abs_diff:.3g}{bound}{agree}"))
        rows.append(("", f"on {check.inputs} inputs" + (f"; {check.note}" if check.note else "")))
    if report.quantization:
        q = report.quantization
        rows.append(("int8", f"{q['format']}, {'per-channel' if q['per_channel'] else 'per-tensor'} weights, "
                             f"{q['calibration']} calibration"))
        rows.append(("calibration", f"{report.calibration_images} inputs: {q['calibration_source']}"))
    rows.append(("time", f"{report.seconds:.1f} s"))
    print_table(f"exported {report.model}", ["", ""], rows)


def render_bench(report: results.BenchReport) -> None:
    """One table: a row per runtime and batch size, the accuracy of each runtime beside its rows."""
    scores = {a.runtime: a for a in report.accuracy}
    metric = report.accuracy[0].metric if report.accuracy else "accuracy"
    rows = []
    for r in report.rows:
        a = scores.get(r.runtime)
        # errors are counts, differences span decades, mIoU and agreement are shares
        vfmt, dfmt = {"errors": (".0f", "+.0f"), "max abs diff": (".3g", "+.3g")}.get(metric, (".4f", "+.4f"))
        value = "-" if a is None or a.value is None else format(a.value, vfmt)
        delta = "" if a is None or a.delta is None else format(a.delta, dfmt)
        rows.append((r.runtime, r.batch_size, f"{r.latency_ms:.3f}", f"{r.images_per_s:,.0f}",
                     "-" if r.ratio is None else f"{r.ratio:.2f}x", value, delta))
    stdout().print(table(f"{report.model}: {report.threads} thread(s), median of {report.rounds} interleaved rounds",
                         ["runtime", "batch", "ms/batch", "images/s", "vs fp32", metric, "delta"], rows,
                         ["left", "right", "right", "right", "right", "right", "right"]))
    stdout().print(f"[dim]{metric} on {report.data} · {report.cpu} · "
                   f"{report.seconds:.0f} s[/]")


def render_transfer(report: results.TransferReport) -> None:
    print_table(f"fine-tuned {report.base} on {len(report.classes)} classes", ["", ""], [
        ("best val accuracy", f"{report.best_val_accuracy:.2%} (epoch {report.best_epoch})"),
        ("images", f"{report.train_images} train, {report.val_images} val"),
        ("weights", report.weights_file),
        ("sha256", report.weights_sha256),
        ("time", f"{report.seconds:.1f} s"),
        ("use it", f"dl classify IMAGE --weights-file {report.weights_file}"),
    ])


def render_caption_train(report: results.CaptionTrainReport) -> None:
    print_table(f"trained {report.config['name']}", ["", ""], [
        ("best epoch", report.best_epoch),
        *((k, v) for k, v in report.metrics.items() if k.startswith("val_bleu")),
        ("weights", report.weights),
        ("use it", f"dl caption IMAGE --weights-file {report.weights}"),
    ])


# --- dl runs --------------------------------------------------------------------------------------


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s" if m else f"{sec}s"


def render_runs_list(found: results.RunsList) -> None:
    """`dl runs list`: one row per run; a broken run's reason on its own line below the table."""
    runs, folder = found.record, found.folder
    if not runs:
        stderr().print(f"no runs in {folder}")
        return
    styles = {"finished": "green", "interrupted": "yellow", "running": "cyan", "broken": "bold red"}
    t = Table(title=f"runs in {folder}", title_justify="left", header_style="bold")
    for col in ("run", "task", "state", "epochs", "steps", "best", "wall time", "weights"):
        t.add_column(col)
    import os

    def name(path: str) -> str:  # relative to the listed folder: the table stays narrow
        rel = os.path.relpath(path, str(folder))
        return path if rel.startswith("..") else rel

    for r in runs:
        best = r.get("best") or {}
        best_text = f"{best.get('metric')} {fmt(best.get('value'))}" if best else "-"
        state = r["state"]
        t.add_row(name(str(r["path"])), r.get("task") or "-", f"[{styles.get(state, '')}]{state}[/]",
                  fmt(r.get("epochs")), fmt(r.get("steps")), best_text, _duration(r.get("seconds")),
                  ", ".join(w.removesuffix(".safetensors") for w in r.get("weights", [])) or "-")
    stdout().print(t)
    for r in runs:
        if r.get("reason"):
            stdout().print(f"[bold]{name(str(r['path']))}[/]: {r['state']}: {r['reason']}", highlight=False)


def render_run_show(shown: results.RunShow) -> None:
    """`dl runs show`: state, config, per-epoch table, files."""
    data = shown.record
    run = data["run"]
    best = run.get("best") or {}
    key_values(f"run {run['path']}", {
        "task": run.get("task"), "state": run["state"] + (f" ({run['reason']})" if run.get("reason") else ""),
        "epochs": run.get("epochs"), "steps": run.get("steps"),
        "best": f"{best.get('metric')} {fmt(best.get('value'))} at step {best.get('step')}" if best else None,
        "wall time": _duration(run.get("seconds")), "started": run.get("started"),
        **{f"note {i + 1}": n for i, n in enumerate(data.get("notes", []))},
    })
    config = data.get("config")
    if isinstance(config, dict):
        print_table("config", ["option", "value"], sorted((k, v if not isinstance(v, (list, dict)) else
                                                           json.dumps(v)) for k, v in config.items()))
    columns = data["columns"]
    print_table("per epoch" if "epoch" in columns else "per report", columns,
                [[r.get(c) for c in columns] for r in data["rows"]])
    print_table("files", ["file", "bytes"], [(f["name"], f["bytes"]) for f in data["files"]])

def render_video(report: results.VideoReport) -> None:
    """A video run: what was read, what was written, the task's tallies and the speed."""
    rows: list[tuple[str, Any]] = [
        ("source", f"{report.source} ({report.width}x{report.height}, {report.fps:.3g} fps)"),
        ("frames processed", f"{report.frames}" + (f" (every {report.vid_stride}th)" if report.vid_stride > 1 else "")
         + (f" from {report.start:g} s" if report.start else "")),
    ]
    for key, value in report.summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        rows.append((key.replace("_", " "), value))
    if report.output:
        rows.append(("annotated video", f"{report.output} ({report.output_fps:.3g} fps)"))
    if report.jsonl and report.jsonl != "-":
        rows.append(("per-frame JSONL", report.jsonl))
    rows.append(("speed", f"{report.frames_per_second:.1f} frames/s ({report.seconds:.2f} s)"))
    print_table(f"{report.task} · {report.model} · {report.provenance.device} ({report.provenance.dtype})",
                ["", ""], rows)


class ClassifyStream:
    """`dl classify`'s output as results come: one table per image, one JSONL line per image (in
    input order, then a closing line), or nothing until the JSON report (`--json`)."""

    def __init__(self, mode: str, model: str) -> None:
        self.mode, self.model = mode, model  # mode: table | json | jsonl
        # A failure is found while reading, before the batch holding the images ahead of it has
        # run, so each line waits until all earlier ones are out.
        self._pending: dict[int, dict[str, Any]] = {}
        self._next = 0

    def _in_order(self, index: int, line: dict[str, Any]) -> None:
        self._pending[index] = line
        while self._next in self._pending:
            emit_jsonl(self._pending.pop(self._next))
            self._next += 1

    def result(self, result: results.ClassifyResult) -> None:
        if self.mode == "jsonl":
            self._in_order(result.index, {"model": self.model, **result.to_dict()})
        elif self.mode == "table":
            render_classify_result(result)

    def failure(self, failure: results.InputFailure) -> None:
        if self.mode == "jsonl":
            self._in_order(failure.index, failure.to_dict())

    def finish(self, report: results.ClassifyReport, engine: str) -> None:
        if self.mode == "json":
            emit_json(report.to_dict())
        elif self.mode == "jsonl":
            emit_jsonl({"provenance": report.provenance.to_dict(), "images": len(report.images),
                        "failures": len(report.failures), "seconds": report.seconds})
        else:
            stdout().print(f"[dim]{self.model} · {engine} · {len(report.images)} image(s) in {report.seconds:.2f} s[/]")


# The table renderer of each result type: `show` is the one entry the commands call.
_TABLES: dict[type, Any] = {
    results.CaptionTrainReport: render_caption_train,
    results.VideoReport: render_video,
    results.TransferReport: render_transfer,
    results.DoctorReport: render_doctor,
    results.ClassifyResult: render_classify_result,
    results.ModelSummary: render_summary,
    results.ProfileReport: render_profile,
    results.CaptionEvalReport: render_caption_eval,
    results.StylizeResult: render_stylize,
    results.GenerateResult: render_generate,
    results.GenerateTrainResult: render_generate_train,
    results.DQNPlayResult: render_dqn_play,
    results.DQNTrainReport: render_dqn_train,
    results.DetectReport: render_detect,
    results.DetectEvalReport: render_detect_eval,
    results.SegmentReport: render_segment,
    results.SegmentEvalReport: render_segment_eval,
    results.MnistTrainReport: render_mnist_train,
    results.MnistEvalReport: render_mnist_eval,
    results.ExportReport: render_export,
    results.BenchReport: render_bench,
    results.WeightsList: render_weights_list,
    results.VerifyReport: render_verify,
    results.Record: render_record,
    results.Line: render_line,
    results.RunsList: render_runs_list,
    results.RunShow: render_run_show,
}


def show(result: Any, as_json: bool, **options: Any) -> None:
    """Print `result` as JSON on stdout (`--json`) or as its table(s) on stderr/stdout; `options`
    go to the table renderer (e.g. all_candidates for captions, usage for a trained model)."""
    if as_json:
        emit_json(result.json_value())
        return
    if isinstance(result, results.CaptionReport):
        render_caption_report(result, **options)
    elif isinstance(result, results.VisionTrainReport):
        render_vision_train(result, **options)
    else:
        table = _TABLES.get(type(result))
        if table is None:
            raise TypeError(f"no table for {type(result).__name__}")
        table(result, **options)
