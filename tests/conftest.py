"""Shared fixtures: a temporary DL_HOME, a clean registry, a tiny architecture with real files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data is only on the developers' and CI machines)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _catalog(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The full registry, as the CLI loads it (the registry itself imports no task module), read
    with an empty cache so the user's own imports never leak in."""
    from dlcli import catalog

    mp = pytest.MonkeyPatch()
    mp.setenv("DL_HOME", str(tmp_path_factory.mktemp("catalog_home")))
    try:
        catalog.load()
    finally:
        mp.undo()


@pytest.fixture(autouse=True)
def dl_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty cache; nothing touches the user's."""
    home = tmp_path_factory.mktemp("dl_home")
    monkeypatch.setenv("DL_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.delenv("DL_OFFLINE", raising=False)
    return home


@pytest.fixture
def clean_registry():
    """Registry entries added by a test are removed afterwards."""
    from dlcli import catalog
    from dlcli.weights import registry

    catalog.load()
    saved = (dict(registry._archs), dict(registry._weights), dict(registry._defaults))
    yield registry
    registry._archs.clear(); registry._archs.update(saved[0])
    registry._weights.clear(); registry._weights.update(saved[1])
    registry._defaults.clear(); registry._defaults.update(saved[2])


def build_tiny(num_classes: int = 3, width: int = 4):
    import torch.nn as nn

    return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny(clean_registry, tmp_path: Path):
    """Registers arch `tinynet` and an entry `tinynet.test` served from a file:// URL."""
    import torch
    from safetensors.torch import save_file

    from dlcli.weights.spec import Arch, UrlSource, WeightsSpec

    registry = clean_registry
    registry.register_arch(Arch("tinynet", "classify", build_tiny, default_config={"num_classes": 3}))
    torch.manual_seed(0)
    src = tmp_path / "served" / "tiny.safetensors"
    src.parent.mkdir()
    save_file({k: v.contiguous() for k, v in build_tiny().state_dict().items()}, str(src))
    spec = registry.register(WeightsSpec(
        name="tinynet.test", arch="tinynet", task="classify",
        source=UrlSource(src.as_uri(), sha256(src), "tiny.safetensors"),
        labels=("a", "b", "c"), license="CC0-1.0", metrics={"acc@1": 0.5}, recipe="random init, for tests",
    ))
    return spec, src


@pytest.fixture()
def one_torch_thread():
    """Tiny models: one intra-op thread is faster than two waiting for each other on a busy 2-core
    machine. Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
