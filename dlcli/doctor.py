"""`dl doctor`: what this machine offers dlcli (versions, devices, precisions, cache, weights, ROMs)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from dlcli.results import DeviceCheck, DoctorReport, WeightsStatus

PACKAGES = ("torch", "torchvision", "typer", "rich", "pillow", "safetensors", "platformdirs", "numpy",
            "gymnasium", "ale-py", "opencv-python-headless")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "dlcli": None}
    from dlcli import __version__

    out["dlcli"] = __version__
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _supports(device: Any, dtype: Any) -> bool:
    import torch

    try:
        with torch.autocast(device_type=device.type, dtype=dtype):
            a = torch.randn(16, 16, device=device)
            (a @ a).sum().item()
        return True
    except Exception:
        return False


def check_devices() -> list[DeviceCheck]:
    """A tiny matmul on each device, timed, and whether fp16/bf16 autocast runs there."""
    import torch

    from dlcli.device import available_devices, fp16_supported

    checks = []
    for name in available_devices():
        dev = torch.device(name)
        label = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
        try:
            a = torch.randn(256, 256, device=dev)
            (a @ a).sum().item()  # warm-up
            t0 = time.perf_counter()
            b = (a @ a).sum().item()
            ms = (time.perf_counter() - t0) * 1000
            ok, err = bool(b == b), None
        except Exception as exc:  # a broken driver must show here, not crash doctor
            ok, ms, err = False, None, str(exc).splitlines()[0]
        checks.append(DeviceCheck(
            device=name, name=label, matmul_ok=ok, matmul_ms=ms,
            fp16=fp16_supported(dev) and _supports(dev, torch.float16),
            bf16=_supports(dev, torch.bfloat16), error=err,
        ))
    return checks


def cache_status() -> tuple[str, bool]:
    from dlcli.weights.store import dl_home

    home = dl_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
        return str(home), True
    except OSError:
        return str(home), False


def weights_status(verify: bool = True) -> list[WeightsStatus]:
    from dlcli.errors import DLError
    from dlcli.weights import registry, store

    rows = []
    for spec in registry.entries():
        state, path = "missing", None
        try:
            p = store.local_path(spec)
            path = str(p)
            if p.is_file():
                state = spec.source.kind if spec.source.kind in ("bundled", "imported", "package") else "cached"
                if verify:
                    store.verify_file(spec, p, remove_bad=False)
                    state += ", verified"
        except DLError as exc:
            state = f"error: {exc.message}"
        rows.append(WeightsStatus(spec.name, spec.task, spec.source.kind, state, path))
    return rows


def cache_problems() -> list[str]:
    """Corrupt records and unreadable index files of the cache (and of the bundled manifest)."""
    from dlcli.errors import DLError
    from dlcli.weights import registry, store

    found = registry.problems()
    try:
        store._read_json(store._hash_index_path())
    except DLError as exc:
        found.append(exc.message)
    return found


def problems_error(report: DoctorReport) -> Any:
    """The error `dl doctor` ends with when something is wrong (its exit code says what)."""
    from dlcli.errors import DeviceError, InputError, WeightsError

    if not all(d.matmul_ok for d in report.devices):
        bad = [d.device for d in report.devices if not d.matmul_ok]
        return DeviceError(f"device check failed on {', '.join(bad)} (see the table above)")
    if not report.cache_writable:
        return InputError(f"the cache {report.cache_dir} is not writable; set DL_HOME to a writable folder")
    n = sum(w.state.startswith("error") for w in report.weights) + len(report.problems)
    return WeightsError(f"{n} problem(s) with weights files or the cache (see the table above); "
                        "`dl weights rm NAME` removes a broken entry")


def atari_status() -> dict[str, Any]:
    try:
        from dlcli.data.atari import atari_roms_status  # the play-dqn module knows the games
    except ImportError:
        atari_roms_status = None
    if atari_roms_status is not None:
        return atari_roms_status()
    try:
        import ale_py.roms as roms

        games = sorted(roms.get_all_rom_ids()) if hasattr(roms, "get_all_rom_ids") else []
        return {"installed": True, "roms": len(games)}
    except ImportError:
        return {"installed": False, "roms": 0, "hint": 'pip install "dlcli[atari]"'}


def run(verify: bool = True) -> DoctorReport:
    cache_dir, writable = cache_status()
    from dlcli.offline import offline_mode
    from dlcli.weights.store import bundled_dir, torch_home

    return DoctorReport(
        versions=package_versions(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        cpu_threads=os.cpu_count() or 1,
        devices=check_devices(),
        cache_dir=cache_dir,
        cache_writable=writable,
        torch_home=str(torch_home()),
        bundled_dir=str(Path(bundled_dir())),
        offline=offline_mode(),
        weights=weights_status(verify),
        atari=atari_status(),
        problems=cache_problems(),
    )
