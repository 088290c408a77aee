"""The weights manager: verified downloads, offline mode, imports, safe loading, the registry."""

import io
import pickle
import urllib.request
from pathlib import Path

import pytest
import torch

from conftest import build_tiny, sha256
from dlcli.errors import InputError, NetworkError, WeightsError
from dlcli.weights import loader, registry, store
from dlcli.weights.spec import UrlSource, WeightsSpec


def test_fetch_good_file_is_verified_and_loads(tiny):
    spec, src = tiny
    path = store.fetch(spec)
    assert path == store.dl_home() / "weights" / "tinynet.test" / "tiny.safetensors"
    assert sha256(path) == sha256(src)
    loaded = loader.load_model("tinynet.test", task="classify")
    assert loaded.labels == ["a", "b", "c"] and loaded.sha256 == sha256(src)
    assert not loaded.model.training
    ref = build_tiny()
    loader.load_into(ref, store.read_state_dict(src)[0], "ref")
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(loaded.model(x), ref(x))


def test_tampered_download_is_refused_and_removed(tiny, clean_registry):
    spec, src = tiny
    bad = WeightsSpec(name="tinynet.bad", arch="tinynet", task="classify",
                      source=UrlSource(src.as_uri(), "0" * 64, "tiny.safetensors"), license="CC0-1.0")
    clean_registry.register(bad)
    with pytest.raises(WeightsError, match="expected 0000.*removed"):
        store.fetch(bad)
    folder = store.dl_home() / "weights" / "tinynet.bad"
    assert not (folder / "tiny.safetensors").exists()
    assert not list(folder.glob("*")) if folder.exists() else True


def test_tampered_cached_file_is_removed_on_use(tiny):
    spec, _ = tiny
    path = store.fetch(spec)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(WeightsError, match="removed"):
        loader.load_model("tinynet.test", task="classify")
    assert not path.exists()


def test_interrupted_download_leaves_nothing_usable(tiny, monkeypatch):
    spec, src = tiny
    data = src.read_bytes()

    class Broken(io.BytesIO):
        headers = {"Content-Length": str(len(data))}

        def read(self, n=-1):
            chunk = super().read(min(n, 100))
            if self.tell() > 200:
                raise ConnectionResetError("connection reset by peer")
            return chunk

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Broken(data))
    with pytest.raises(NetworkError, match="download of .* failed"):
        store.fetch(spec)
    folder = store.dl_home() / "weights" / "tinynet.test"
    assert list(folder.iterdir()) == []  # neither the file nor a .part remains


def test_offline_mode_fails_fast_with_url_hash_and_target(tiny, monkeypatch):
    spec, src = tiny
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network touched"))
    with pytest.raises(WeightsError) as err:
        store.fetch(spec, offline=True)
    msg = str(err.value)
    assert src.as_uri() in msg and sha256(src) in msg and str(store.local_path(spec)) in msg
    monkeypatch.setenv("DL_OFFLINE", "1")
    with pytest.raises(WeightsError, match="offline"):
        store.fetch(spec)


def test_import_valid_state_dict(tiny, tmp_path):
    torch.manual_seed(1)
    model = build_tiny()
    f = tmp_path / "mine.pth"
    torch.save(model.state_dict(), f)
    spec = loader.import_weights("tinynet.mine", f, labels=["x", "y", "z"], license="MIT")
    assert spec.source.kind == "imported" and registry.get("tinynet.mine") == spec
    loaded = loader.load_model("tinynet.mine", task="classify")
    assert loaded.labels == ["x", "y", "z"]
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(loaded.model(x), model.eval()(x))
    with pytest.raises(WeightsError, match="already imported; pass --force"):
        loader.import_weights("tinynet.mine", f)
    store.remove_cached(spec)
    registry.reload_imported()
    assert registry.lookup("tinynet.mine") is None


def test_import_refuses_tensors_that_do_not_fit(tiny, tmp_path):
    f = tmp_path / "wide.pth"
    torch.save(build_tiny(width=8).state_dict(), f)
    with pytest.raises(WeightsError, match=r"does not fit the architecture: wrong shape"):
        loader.import_weights("tinynet.wide", f)
    assert registry.lookup("tinynet.wide") is None


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/dlcli-pwned"),))


def test_pickled_code_is_never_run(tiny, tmp_path):
    f = tmp_path / "evil.pth"
    with open(f, "wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    Path("/tmp/dlcli-pwned").unlink(missing_ok=True)
    with pytest.raises(WeightsError, match="cannot be loaded safely"):
        loader.import_weights("tinynet.evil", f)
    assert not Path("/tmp/dlcli-pwned").exists()


def test_weights_file_with_metadata_loads_without_a_name(tiny, tmp_path):
    model = build_tiny()
    f = tmp_path / "run" / "best.safetensors"
    store.save_weights_file(f, model.state_dict(), {"arch": "tinynet", "task": "classify", "labels": ["p", "q", "r"],
                                                    "config": {"num_classes": 3}, "preprocess": "imagenet"})
    loaded = loader.load_model(task="classify", file=f)
    assert loaded.labels == ["p", "q", "r"] and loaded.spec.arch == "tinynet"
    with pytest.raises(WeightsError, match="not 'detect'"):
        loader.load_model(task="detect", file=f)
    with pytest.raises(InputError, match="does not exist"):
        loader.load_model(task="classify", file=tmp_path / "nope.safetensors")


def test_unknown_name_suggests(tiny):
    with pytest.raises(WeightsError, match="did you mean 'tinynet.test'"):
        registry.get("tinynet.tset")
    with pytest.raises(WeightsError, match="is an architecture; name its weights: tinynet.test"):
        registry.get("tinynet")


def test_duplicate_names_are_refused(tiny, clean_registry):
    spec, _ = tiny
    with pytest.raises(ValueError, match="duplicate weights name"):
        clean_registry.register(WeightsSpec(name=spec.name, arch="tinynet", task="classify", source=spec.source))


def _all_entries():
    from dlcli import catalog

    catalog.load()  # collection runs before the session fixture: parametrise over the whole catalogue
    return registry.entries()


@pytest.mark.parametrize("spec", _all_entries(), ids=lambda s: s.name)
def test_registry_entry_schema(spec):
    """Every registered entry is complete: known arch and task, preset, licence, a hash or an enum."""
    from dlcli.weights.presets import preset_names

    arch, tag = spec.name.split(".", 1)
    assert arch == spec.arch and tag
    assert spec.task in registry.TASKS
    assert registry.get_arch(spec.arch).task == spec.task
    assert spec.preprocess in preset_names()
    assert spec.license, f"{spec.name} has no licence"
    kind = spec.source.kind
    if kind in ("url", "bundled", "package", "imported"):
        assert len(spec.source.sha256) == 64
    if kind == "bundled":
        path = store.local_path(spec)
        assert path.is_file(), f"bundled file missing: {path}"
        assert sha256(path) == spec.source.sha256
        assert spec.metrics and spec.recipe, f"{spec.name}: bundled weights need metrics and a recipe"
    if kind == "torchvision":
        assert store.source_url(spec).startswith("https://")


def test_every_task_default_resolves():
    for task, name in registry._defaults.items():
        assert registry.resolve(None, task).name == name
