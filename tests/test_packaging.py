"""A non-editable install carries the bundled weights: build the wheel and look inside."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_bundled_weights(tmp_path):
    pytest.importorskip("hatchling")
    proc = subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("dlcli-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(site)
    manifest = json.loads((ROOT / "weights" / "manifest.json").read_text())
    assert "dlcli/_bundled/manifest.json" in names
    for rec in manifest["weights"]:
        assert f"dlcli/_bundled/{rec['file']}" in names, rec["file"]
    # The installed package finds its bundled dir inside itself, not in a source checkout.
    out = subprocess.run([sys.executable, "-c", "from dlcli.weights.store import bundled_dir; print(bundled_dir())"],
                         cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == site / "dlcli" / "_bundled"
