"""`dl bench NAME`: one table of the model's speed and accuracy under torch and onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command


def register(app: typer.Typer) -> None:
    @command(app, "bench")
    def bench(
        model: str = typer.Argument(..., help="Weights name ARCH.TAG (classify, segment, generate and dqn models)."),
        runtimes: str = typer.Option("torch-fp32,torch-bf16,onnx-fp32,onnx-int8", "--runtimes", help="Comma-separated: torch-fp32, torch-bf16 (autocast), onnx-fp32, onnx-int8."),
        batch_size: str = typer.Option("1,8", "--batch-size", "-b", help="Comma-separated batch sizes."),
        data: Optional[Path] = typer.Option(None, "--data", help="Held-out data: a folder with the MNIST IDX files (digit models; errors on the test set) or a folder of images (classifiers; top-1 agreement with torch-fp32). Scene models use held-out scenes."),
        calibrate: Optional[str] = typer.Option(None, "--calibrate", help="Calibration inputs for onnx-int8 (default: the MNIST training set with --data, scenes for scene models, the --data images)."),
        calibration_size: int = typer.Option(1000, "--calibration-size", min=1, help="Calibration inputs for onnx-int8."),
        eval_size: Optional[int] = typer.Option(None, "--eval-size", min=1, help="Score on this many held-out inputs (default: all of --data; 200 scenes)."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for torch and onnxruntime alike (default: torch's)."),
        rounds: int = typer.Option(5, "--rounds", min=1, help="Rounds of timing; each times every runtime and batch size once, interleaved (the median is shown)."),
        *,
        opts: Options,
    ) -> None:
        """Time a model under torch (fp32, bf16) and onnxruntime (fp32, int8) in one run, on the CPU:
        latency, images/s and the ratio to torch-fp32 per batch size, then the accuracy of each."""
        import dataclasses

        from dlcli import render
        from dlcli.errors import InputError
        from dlcli.tasks.bench import bench as run_bench

        if opts.device not in ("auto", "cpu") or opts.precision not in ("auto", "fp32"):
            raise InputError("dl bench runs on the CPU and picks precisions with --runtimes; drop --device/--precision")
        rt, reporter = dataclasses.replace(opts, device="cpu").start()
        report = run_bench(model, runtimes=runtimes, batch_sizes=batch_size, data=data, calibrate=calibrate,
                           calibration_size=calibration_size, eval_size=eval_size, threads=threads, rounds=rounds,
                           offline=opts.offline, reporter=reporter, runtime=rt)
        render.show(report, opts.json)
