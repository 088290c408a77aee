"""The common shape of a task's loaded model: weights + preprocessing + labels, placed by the
device manager. (A leading underscore keeps the registry's task discovery from importing it.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dlcli.errors import WeightsError
from dlcli.weights.spec import WeightsSpec

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime


def nan_error(name: str, runtime: Runtime, what: str = "outputs") -> WeightsError:
    """NaN or infinite outputs come from the weights (or a low precision they overflow in), not
    from the input: exit 3, never `null` probabilities with exit 0."""
    dtype = getattr(runtime, "dtype_name", "float32")
    hint = "" if dtype == "float32" else " (or try --precision fp32)"
    return WeightsError(f"{name} produces NaN or infinite {what} on {dtype}: the weights are broken; "
                        f"re-import or retrain them{hint}")


class PlacedModel:
    """A loaded model with its preprocessing and labels, placed by the device manager."""

    def __init__(self, loaded: Any, runtime: Runtime, *, channels_last: bool = False) -> None:
        from dlcli.weights.presets import transform_for

        self.loaded = loaded
        self.runtime = runtime
        self.transform, self.mode = transform_for(loaded.spec)
        self.channels_last = channels_last
        self.model = runtime.place(loaded.model, channels_last=channels_last).eval()
        self.labels = loaded.labels

    @property
    def spec(self) -> WeightsSpec:
        return self.loaded.spec

    def label(self, index: int) -> str:
        """The class name of an index (the index itself where the entry has no labels)."""
        if self.labels is not None and 0 <= index < len(self.labels):
            return self.labels[index]
        return str(index)
