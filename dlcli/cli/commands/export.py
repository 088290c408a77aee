"""`dl export NAME --format onnx|torchscript --out FILE`: hand a model over to another runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlcli.cli.app import Options, command


def register(app: typer.Typer) -> None:
    @command(app, "export")
    def export(
        model: Optional[str] = typer.Argument(None, help="Weights name ARCH.TAG (classify, segment, detect, generate and dqn models; see `dl weights list`)."),
        out: Path = typer.Option(..., "--out", "-o", help="The file to write (model.onnx, model.pt; a TorchScript file gets FILE.json beside it)."),
        fmt: str = typer.Option("onnx", "--format", "-f", help="onnx (torch's exporter; runs in onnxruntime) | torchscript (torch.jit; for libtorch)."),
        weights_file: Optional[Path] = typer.Option(None, "--weights-file", help="A .safetensors file written by dlcli training, instead of NAME."),
        int8: bool = typer.Option(False, "--int8", help="Post-training static int8 quantisation (onnxruntime; needs --calibrate except for generators)."),
        calibrate: Optional[str] = typer.Option(None, "--calibrate", help="Calibration inputs for --int8: a folder of images like those the model will see, a folder with the MNIST IDX files (digit models), or 'scenes' (scene models)."),
        calibration_size: int = typer.Option(1000, "--calibration-size", min=1, help="At most this many calibration inputs (the first ones)."),
        tolerance: Optional[float] = typer.Option(None, "--tolerance", help="Largest max-abs-difference from torch accepted before writing (default 1e-4 for fp32; int8 is reported, and bounded only when this is given)."),
        per_tensor: bool = typer.Option(False, "--per-tensor", help="int8 weights with one scale per tensor instead of per output channel."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
        *,
        opts: Options,
    ) -> None:
        """Export a model to ONNX or TorchScript with its labels, preprocessing and source weights
        (name and SHA-256) inside; the export is run beside torch on a few inputs and the file is
        written only when they agree. Run the file with `dl classify|segment|generate --model-file`."""
        from dlcli import render
        from dlcli.errors import InputError
        from dlcli.tasks.export import export as run_export

        if opts.precision not in ("auto", "fp32"):
            raise InputError("--precision does not apply to dl export: graphs are exported in fp32 (--int8 quantises)")
        if opts.device not in ("auto", "cpu"):
            raise InputError("dl export traces and checks on the CPU; drop --device")
        import dataclasses

        rt, reporter = dataclasses.replace(opts, device="cpu").start()
        report = run_export(model=model, weights_file=weights_file, fmt=fmt, out=out, int8=int8, calibrate=calibrate,
                            calibration_size=calibration_size, tolerance=tolerance, per_channel=not per_tensor,
                            force=force, offline=opts.offline, reporter=reporter, runtime=rt)
        render.show(report, opts.json)
