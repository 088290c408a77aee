"""The shared learning-rate schedules (dlcli/training/schedules.py)."""

from __future__ import annotations

import pytest

from dlcli.training.schedules import ONECYCLE_START, lr_factor


def test_onecycle_rises_to_the_peak_then_anneals_to_the_floor() -> None:
    f = lr_factor("onecycle", 100, warmup=20)
    values = [f(s) for s in range(100)]
    assert values[0] == pytest.approx(ONECYCLE_START)
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == 20
    assert all(a < b for a, b in zip(values[:20], values[1:21]))  # rising
    assert all(a > b for a, b in zip(values[20:99], values[21:100]))  # falling
    assert values[-1] == pytest.approx(0.0)
    assert lr_factor("onecycle", 100, warmup=20, floor=0.1)(99) == pytest.approx(0.1)


def test_onecycle_default_warmup_is_a_quarter_and_tiny_runs_work() -> None:
    f = lr_factor("onecycle", 200)
    peak = max(range(200), key=f)
    assert peak == 50
    one = lr_factor("onecycle", 1)
    assert 0.0 <= one(0) <= 1.0
    two = lr_factor("onecycle", 2)
    assert [two(0), two(1)] == [pytest.approx(1.0), pytest.approx(0.0)]  # no room to warm up: start at the peak
    four = lr_factor("onecycle", 4)
    assert [four(0), four(1), four(3)] == [pytest.approx(ONECYCLE_START), pytest.approx(1.0), pytest.approx(0.0)]


def test_other_kinds_and_unknown() -> None:
    assert lr_factor("cosine", 10)(0) == 1.0 and lr_factor("cosine", 10)(10) == pytest.approx(0.0)
    assert lr_factor("step", 8)(4) == pytest.approx(0.1) and lr_factor("step", 8)(6) == pytest.approx(0.01)
    assert lr_factor("none", 5, warmup=4)(1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("exp", 10)
