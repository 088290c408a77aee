"""What fills the registry: the explicit list of task modules that register architectures,
preprocessing presets and weights entries when imported.

The registry itself is passive (dlcli/weights/registry.py never imports a task). Whoever needs the
full catalogue, the CLI, the tests, a benchmark script or a Python user, calls `load()` once first.
This module sits at the top of the layers, beside cli/: it may import tasks/, nothing imports it
from below.
"""

from __future__ import annotations

import importlib

TASK_MODULES: tuple[str, ...] = (
    "dlcli.tasks.classify",
    "dlcli.tasks.digits",
    "dlcli.tasks.detect",
    "dlcli.tasks.segment",
    "dlcli.tasks.caption",
    "dlcli.tasks.stylize",
    "dlcli.tasks.generate",
    "dlcli.tasks.dqn",
)

_loaded = False


def load() -> None:
    """Import every task module (each registers its names), then let the bundled manifest and the
    user's imports take their places over the task modules' defaults."""
    global _loaded
    if _loaded:
        return
    for name in TASK_MODULES:
        importlib.import_module(name)
    from dlcli.weights import registry

    registry.load_files()
    _loaded = True
