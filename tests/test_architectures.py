"""Every registered architecture builds without a download and runs one tiny forward pass whose
output has the shape its task promises (the registry is the list: a new architecture is tested
the moment it is registered)."""

from __future__ import annotations

import pytest
import torch

from dlcli import catalog
from dlcli.weights import registry

catalog.load()
ARCHS = registry.archs()


def _forward(arch, model: torch.nn.Module, config: dict) -> None:
    name, task = arch.name, arch.task
    if task == "classify":
        channels, side = (1, 28) if name == "deepconvnet" else (3, 64)
        out = model(torch.rand(2, channels, side, side))
        classes = config.get("num_classes", 10 if name == "deepconvnet" else 1000)
        assert out.shape == (2, classes)
    elif task == "segment":
        out = model(torch.rand(1, 3, 48, 64))
        out = out["out"] if isinstance(out, dict) else out
        assert out.shape == (1, config["num_classes"], 48, 64)
    elif task == "detect":
        if hasattr(model, "transform"):  # torchvision resizes to 800 px by default: keep the test small
            model.transform.min_size, model.transform.max_size = (64,), 64
        (out,) = model([torch.rand(3, 64, 80)])
        n = out["boxes"].shape[0]
        assert out["boxes"].shape == (n, 4) and out["labels"].shape == (n,) and out["scores"].shape == (n,)
        if n:
            assert int(out["labels"].max()) < config["num_classes"]
    elif task == "generate":
        out = model(torch.randn(3, config["latent_dim"]))
        assert out.shape == (3, config["channels"], config["image_size"], config["image_size"])
        assert float(out.abs().max()) <= 1.0  # tanh output
    elif task == "dqn":
        out = model(torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8))
        assert out.shape == (2, config["n_actions"])
    elif task == "caption":
        ids = torch.randint(0, config["vocab_size"], (2, 5))
        out = model(torch.rand(2, 3, 64, 64), ids)
        assert out.shape == (2, 5, config["vocab_size"])
    elif task == "stylize":
        if hasattr(model, "index_of"):
            out = model(torch.rand(1, 3, 32, 32), ["conv1_1", "conv5_1"])
            assert out["conv1_1"].shape[:2] == (1, 64) and out["conv5_1"].shape[:2] == (1, 512)
        else:
            out = model(torch.rand(1, 3, 32, 32))
            assert out.dim() == 4 and out.shape[1] == 512
    else:  # a new task: say so rather than pass silently
        pytest.fail(f"no forward check for task {task!r} ({name}); add one here")


@pytest.mark.parametrize("arch", ARCHS, ids=[a.name for a in ARCHS])
def test_every_architecture_builds_and_runs_a_tiny_forward(arch) -> None:
    torch.manual_seed(0)
    config = dict(arch.default_config)
    model = arch.build(**config)
    if arch.finalize is not None:
        model = arch.finalize(model, config) or model
    model.eval()
    assert sum(p.numel() for p in model.parameters()) > 0
    with torch.inference_mode():
        _forward(arch, model, config)
