"""What a runtime says about itself in every result's provenance. Shared by the device manager
(dlcli/device.py, which imports torch) and its torch-free stand-in for onnxruntime
(dlcli/export/runtime.py), so that both write the same record."""

from __future__ import annotations

from typing import Any


class RuntimeRecord:
    """Mixin: `describe()` from the attributes both runtimes have (device, dtype_name,
    requested_precision, seed, deterministic)."""

    def describe(self) -> dict[str, Any]:
        """What was actually used; every JSON result carries it."""
        return {
            "device": str(self.device),  # type: ignore[attr-defined]
            "dtype": self.dtype_name,  # type: ignore[attr-defined]
            "precision_requested": self.requested_precision,  # type: ignore[attr-defined]
            "seed": self.seed,  # type: ignore[attr-defined]
            "deterministic": self.deterministic,  # type: ignore[attr-defined]
        }
