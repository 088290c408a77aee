"""The one offline switch: `--offline` or DL_OFFLINE=1 (also true/yes/on). Every place that may
touch the network (weights downloads, URL inputs, data sets) asks here, so the two spellings can
never disagree."""

from __future__ import annotations

import os

_TRUE = ("1", "true", "yes", "on")


def offline_mode(flag: bool = False) -> bool:
    """True when the --offline flag was given or DL_OFFLINE is set to a true value."""
    return bool(flag) or os.environ.get("DL_OFFLINE", "").strip().lower() in _TRUE
