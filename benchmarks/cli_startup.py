"""Start-up time of `dl --help` and `dl <cmd> --help` against a bare `python -c pass`, measured in
the same run (the machine is shared and noisy: compare the ratio and the CPU time, not wall time
alone). Goal: `dl --help` < 0.3 s on a 2-core machine, and torch never imported.

    python benchmarks/cli_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(cmd: list[str], repeat: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds of the child)."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    env_dl = [sys.executable, "-m", "dlcli"]  # rows below: python -m dlcli
    base_wall, base_cpu = measure([sys.executable, "-c", "pass"], args.repeat)
    print(f"{'command':34} {'wall s':>8} {'cpu s':>8} {'x python':>9}")
    print(f"{'python -c pass (baseline)':34} {base_wall:8.3f} {base_cpu:8.3f} {1.0:9.2f}")
    from typer.main import get_command

    from dlcli.cli.app import app

    names = sorted(get_command(app).commands)  # type: ignore[attr-defined]
    # The console script beside this interpreter (a version manager's shim on PATH, e.g. pyenv's,
    # adds its own start-up of about 0.1 s that is not ours).
    script = str(Path(sys.executable).with_name("dl")) if Path(sys.executable).with_name("dl").exists() else shutil.which("dl")
    if script:
        wall, cpu = measure([script, "--help"], args.repeat)
        print(f"{'dl --help (console script)':34} {wall:8.3f} {cpu:8.3f} {wall / base_wall:9.2f}")
    for sub in [[]] + [[n] for n in names]:
        wall, cpu = measure(env_dl + sub + ["--help"], args.repeat)
        print(f"{' '.join(['dl', *sub, '--help']):34} {wall:8.3f} {cpu:8.3f} {wall / base_wall:9.2f}")
    print(f"(load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} cpus)")


if __name__ == "__main__":
    main()
