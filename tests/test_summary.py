"""dl summary: shapes, parameters, MACs and receptive fields, checked against hand counts."""

from __future__ import annotations

import json

from typer.testing import CliRunner


def test_hand_counted_small_net() -> None:
    import torch.nn as nn

    from dlcli.tasks.summary import summarize_module

    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),          # rf 3, jump 1
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),          # rf 5
        nn.MaxPool2d(2),                                    # rf 6, jump 2
        nn.Conv2d(4, 8, 3, padding=1, stride=2),           # rf 6 + 2*2 = 10, jump 4
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )
    s = summarize_module(net, (1, 16, 16), name="toy")
    rows = {l.name: l for l in s.layers}
    assert rows["0"].output_shape == (4, 16, 16) and rows["0"].params == 4 * 9 + 4
    assert rows["0"].macs == 4 * 16 * 16 * 9
    assert rows["2"].macs == 4 * 16 * 16 * 4 * 9
    assert [rows[k].receptive_field for k in ("0", "2", "4", "5")] == [3, 5, 6, 10]
    assert rows["5"].output_shape == (8, 4, 4) and rows["5"].jump == 4
    assert rows["6"].receptive_field == 10 + 3 * 4  # the global pool sees the whole 4x4 map
    assert rows["8"].receptive_field is None and rows["8"].macs == 80
    assert s.total_params == sum(p.numel() for p in net.parameters())
    assert s.total_macs == sum(l.macs for l in s.layers)


def test_stacked_3x3_point_of_the_book() -> None:
    from dlcli.tasks.summary import stacked_3x3_demo

    demo = {d.convs: (d.receptive_field, d.weights_stacked, d.weights_single) for d in stacked_3x3_demo()}
    assert demo[2] == (5, 18, 25) and demo[3] == (7, 27, 49)


def test_resnet_branches_and_totals() -> None:
    from dlcli.tasks.summary import summarize

    s = summarize("resnet18", input_size=64)
    assert s.total_params == 11_689_512  # torchvision's documented count
    last_conv = [l for l in s.layers if l.type == "Conv2d" and l.name.startswith("layer4")][-1]
    assert last_conv.output_shape == (512, 2, 2) and last_conv.receptive_field == 435  # the known ResNet-18 value
    assert s.layers[-1].output_shape == (1000,)


def test_cli_json_and_unknown_model() -> None:
    from dlcli.cli.app import app

    res = CliRunner().invoke(app, ["summary", "squeezenet1_0", "--json", "--input-size", "96"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["input_shape"] == [3, 96, 96] and data["total_params"] == 1_248_424
    assert data["stacked_3x3"][1]["weights_stacked"] == 18
    res = CliRunner().invoke(app, ["summary", "resnet5"])
    assert res.exit_code == 3 and "did you mean" in res.stderr


def test_text_table_shows_the_3x3_comparison() -> None:
    from dlcli.cli.app import app

    res = CliRunner().invoke(app, ["summary", "resnet18", "--input-size", "64"])
    assert res.exit_code == 0, res.output
    assert "5x5" in res.stdout and "49" in res.stdout and "layer4.1.co" in res.stdout


def test_conv_subclass_with_a_padding_child_counts_as_one_conv() -> None:
    """EfficientNet-Lite's Conv2dStaticSamePadding: a Conv2d holding a ZeroPad2d child."""
    import torch.nn as nn
    import torch.nn.functional as F

    from dlcli.tasks.summary import summarize_module

    class PaddedConv(nn.Conv2d):
        def __init__(self) -> None:
            super().__init__(2, 3, 3)
            self.pad = nn.ZeroPad2d(1)

        def forward(self, x):
            return F.conv2d(self.pad(x), self.weight, self.bias)

    s = summarize_module(nn.Sequential(PaddedConv(), nn.ReLU()), (2, 8, 8))
    assert [l.type for l in s.layers] == ["PaddedConv", "ReLU"]
    assert s.layers[0].macs == 3 * 8 * 8 * 2 * 9 and s.layers[0].receptive_field == 3


def test_squeeze_excitation_gates_do_not_inflate_the_receptive_field() -> None:
    from dlcli.tasks.summary import summarize

    s = summarize("mobilenet_v3_large", input_size=64)
    fields = [l.receptive_field for l in s.layers if l.receptive_field is not None]
    assert max(fields) < 1000  # a global-pool gate multiplied back in must not compound
