"""dl profile: categories, shares that add up, and the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner


def test_categories() -> None:
    import torch.nn as nn

    from dlcli.tasks.profile import category_of

    assert category_of(nn.Conv2d(1, 1, 3)) == "conv"
    assert category_of(nn.MaxPool2d(2)) == "pool" and category_of(nn.AdaptiveAvgPool2d(1)) == "pool"
    assert category_of(nn.Linear(2, 2)) == "fc"
    assert category_of(nn.BatchNorm2d(2)) == "norm"
    assert category_of(nn.ReLU()) == "activation" and category_of(nn.Hardswish()) == "activation"
    assert category_of(nn.Dropout()) == "other"


def test_profile_conv_heavy_net_shares_add_up() -> None:
    import torch.nn as nn

    from dlcli.device import Runtime
    from dlcli.tasks.profile import profile_module

    net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16 * 16, 10)).eval()
    r = profile_module(net, Runtime.create("cpu"), (3, 32, 32), warmup=1, repeats=7, name="toy")
    shares = {c.category: c for c in r.categories}
    assert sum(c.share for c in r.categories) == pytest.approx(1.0, abs=1e-6)
    assert shares["conv"].calls == 2 and shares["activation"].calls == 2 and shares["fc"].calls == 1
    assert shares["conv"].share > shares["pool"].share  # two 32-channel 3x3 convs outweigh one pool
    assert r.forward_ms > 0 and r.input_shape == (1, 3, 32, 32)


def test_cli_json_counts_every_call_of_a_reused_module() -> None:
    from dlcli.cli.app import app

    res = CliRunner().invoke(app, ["profile", "resnet18", "--input-size", "64", "--warmup", "0", "--repeats", "1",
                                   "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    cats = {c["category"]: c for c in data["categories"]}
    assert cats["conv"]["calls"] == 20  # 17 3x3/7x7 convs + 3 downsample 1x1s
    assert cats["activation"]["calls"] == 17  # torchvision reuses one ReLU per block: every call counts
    assert data["provenance"]["device"] == "cpu" and data["provenance"]["dtype"] == "float32"
