"""Learning-rate schedules as multipliers of the base rate, computed from the step counter alone
(so a resumed run continues its schedule exactly). One function for every trainer."""

from __future__ import annotations

import math
from typing import Callable

SCHEDULES = ("none", "constant", "step", "cosine", "linear", "onecycle")
ONECYCLE_WARMUP = 0.25  # share of a one-cycle run spent rising, when no warm-up is given
ONECYCLE_START = 0.04  # a one-cycle run starts at this fraction of its peak


def lr_factor(kind: str, total_steps: int, *, warmup: int = 0, floor: float = 0.0) -> Callable[[int], float]:
    """Multiplier at step s: a linear warm-up over `warmup` steps, then
    - none / constant: 1;
    - step: x0.1 at 50% and again at 75% of the run;
    - cosine: from 1 down to `floor` at the last step;
    - linear: from 1 down to `floor` at the last step;
    - onecycle (Smith's one-cycle policy, cosine-shaped): from ONECYCLE_START up to 1 over
      `warmup` steps (a quarter of the run when `warmup` is 0), then down to `floor` at the last
      step. A high peak reached gently trains fast without the early divergence a constant high
      rate risks; the long descent anneals to a flat minimum."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}: one of {', '.join(SCHEDULES)}")
    total = max(1, int(total_steps))
    if kind == "onecycle" and warmup <= 0:
        warmup = round(ONECYCLE_WARMUP * total)
    warm = max(0, min(int(warmup), total - 1))

    def factor(step: int) -> float:
        if kind == "onecycle":
            if step < warm:
                t = step / warm
                return ONECYCLE_START + (1 - ONECYCLE_START) * 0.5 * (1 - math.cos(math.pi * t))
            t = min(1.0, (step - warm) / max(1, total - 1 - warm))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total - warm))
        if kind == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if kind == "linear":
            return floor + (1 - floor) * (1 - t)
        if kind == "step":
            return 0.1 ** ((step >= total // 2) + (step >= (3 * total) // 4))
        return 1.0

    return factor


def warmup_cosine(total_steps: int, warmup: int, floor: float = 0.05) -> Callable[[int], float]:
    """Linear warm-up, then cosine from 1 down to `floor` (the scene, caption and transfer trainers)."""
    return lr_factor("cosine", total_steps, warmup=warmup, floor=floor)
