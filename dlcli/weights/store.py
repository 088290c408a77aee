"""Files behind weights entries: cache locations, verified downloads, safe loading, imports.

Every file is hashed in full before it is used; a file that does not match is removed, never
loaded. Tensors are read only through safetensors or `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from dlcli.atomic import atomic_target
from dlcli.errors import NetworkError, WeightsError
from dlcli.progress import NullReporter, Reporter
from dlcli.weights.spec import (
    BundledSource,
    ImportedSource,
    PackageSource,
    TorchvisionSource,
    UrlSource,
    WeightsSpec,
)

CHUNK = 1 << 20
META_KEY = "dlcli"  # safetensors metadata key holding our JSON (arch, config, labels, metrics…)


# --- locations -------------------------------------------------------------------------------


def dl_home() -> Path:
    """$DL_HOME, else the platform's user cache dir (e.g. ~/.cache/dlcli)."""
    env = os.environ.get("DL_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dlcli"))


def torch_home() -> Path:
    """Where torchvision keeps its downloads ($TORCH_HOME, default ~/.cache/torch), so files a
    user already has are reused."""
    env = os.environ.get("TORCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() / "torch" if xdg else Path.home() / ".cache" / "torch"


def bundled_dir() -> Path:
    """weights/ as shipped: inside the wheel (dlcli/_bundled), else the source checkout's weights/."""
    pkg = Path(__file__).resolve().parents[1]
    inside = pkg / "_bundled"
    return inside if inside.is_dir() else pkg.parent / "weights"


def offline_mode(flag: bool = False) -> bool:
    return flag or os.environ.get("DL_OFFLINE", "").strip().lower() in ("1", "true", "yes")


# --- hashing and atomic files -----------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# --- index of full hashes for files we did not name the hash of (torchvision) ------------------


def _hash_index_path() -> Path:
    return dl_home() / "hashes.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {path}: {exc}; delete it and retry") from None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# --- where each source's file lives ------------------------------------------------------------


def torchvision_weights(source: TorchvisionSource) -> Any:
    """The torchvision Weights enum member named by `source` (imports torchvision)."""
    import torchvision.models as tvm

    enum_name, _, member = source.enum.partition(".")
    for module in (tvm, tvm.detection, tvm.segmentation, tvm.video, tvm.optical_flow, tvm.quantization):
        enum = getattr(module, enum_name, None)
        if enum is not None:
            return getattr(enum, member)
    raise WeightsError(f"torchvision has no weights {source.enum!r}; upgrade torchvision")


def _torchvision_hash_prefix(filename: str) -> str | None:
    m = re.search(r"-([a-f0-9]{6,})\.", filename)
    return m.group(1) if m else None


def source_url(spec: WeightsSpec) -> str | None:
    src = spec.source
    if isinstance(src, UrlSource):
        return src.url
    if isinstance(src, TorchvisionSource):
        return torchvision_weights(src).url
    return None


def expected_sha256(spec: WeightsSpec) -> str | None:
    """The full hash we hold for this entry (None for a torchvision file never verified here)."""
    src = spec.source
    if isinstance(src, (BundledSource, UrlSource, PackageSource, ImportedSource)):
        return src.sha256
    return _read_json(_hash_index_path()).get(spec.name)


def local_path(spec: WeightsSpec) -> Path:
    """Where this entry's file is (or would be, once fetched)."""
    src = spec.source
    if isinstance(src, BundledSource):
        return bundled_dir() / src.filename
    if isinstance(src, UrlSource):
        return dl_home() / "weights" / spec.name / src.filename
    if isinstance(src, TorchvisionSource):
        url = torchvision_weights(src).url
        return torch_home() / "hub" / "checkpoints" / Path(urllib.parse.urlparse(url).path).name
    if isinstance(src, ImportedSource):
        return dl_home() / "imported" / src.filename
    if isinstance(src, PackageSource):
        import importlib.util

        found = importlib.util.find_spec(src.module)
        if found is None or not found.submodule_search_locations:
            raise WeightsError(
                f"weights {spec.name!r} come with the pip package {src.pip_name!r}, which is not installed: "
                f"pip install {src.pip_name}"
            )
        return Path(list(found.submodule_search_locations)[0]) / src.resource
    raise WeightsError(f"unknown source for {spec.name!r}")  # pragma: no cover


# --- downloading -------------------------------------------------------------------------------


def download(url: str, dest: Path, sha256: str | None, *, sha256_prefix: str | None = None,
             reporter: Reporter | None = None, timeout: float = 60.0) -> str:
    """Download `url` to `dest` through a temporary file, hashing as it streams. The file is
    renamed into place only when its SHA-256 matches (full hash, or torchvision's published
    prefix); otherwise it is removed and WeightsError is raised. Returns the full hash."""
    reporter = reporter or NullReporter()
    h = hashlib.sha256()
    try:
        with atomic_target(dest) as tmp:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                    total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
                    reporter.start(f"downloading {dest.name}", float(total) if total else None, unit="B")
                    for chunk in iter(lambda: resp.read(CHUNK), b""):
                        out.write(chunk)
                        h.update(chunk)
                        reporter.advance(len(chunk))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise NetworkError(
                    f"download of {url} failed ({reason}); check the network, or fetch it yourself "
                    f"and place it at {dest}"
                ) from None
            finally:
                reporter.finish()
            digest = h.hexdigest()
            if sha256 is not None and digest != sha256.lower():
                raise WeightsError(
                    f"{url} has SHA-256 {digest}, expected {sha256}: the file is corrupt or was tampered "
                    "with and was removed; try again, or report the mismatch"
                )
            if sha256_prefix is not None and not digest.startswith(sha256_prefix):
                raise WeightsError(
                    f"{url} has SHA-256 {digest}, which does not start with {sha256_prefix} as its "
                    "name promises: the file was removed; try again"
                )
    except KeyboardInterrupt:
        raise
    return digest


def _offline_error(spec: WeightsSpec, path: Path) -> WeightsError:
    url = source_url(spec)
    sha = expected_sha256(spec) or (
        f"(starts with {_torchvision_hash_prefix(path.name)})" if _torchvision_hash_prefix(path.name) else "unknown"
    )
    return WeightsError(
        f"weights {spec.name!r} are not on this machine and offline mode is on: download {url} "
        f"(SHA-256 {sha}) and save it as {path}, or bring a copy in with "
        f"`dl weights import {spec.arch}.mine FILE` and use --model {spec.arch}.mine"
    )


def fetch(spec: WeightsSpec, *, offline: bool = False, reporter: Reporter | None = None) -> Path:
    """Make sure the entry's file is here and verified; return its path."""
    path = local_path(spec)
    src = spec.source
    if isinstance(src, (BundledSource, ImportedSource, PackageSource)):
        if not path.is_file():
            where = "bundled with dlcli" if isinstance(src, BundledSource) else "imported"
            raise WeightsError(f"weights file for {spec.name!r} ({where}) is missing at {path}; reinstall dlcli "
                               "or re-import it")
        verify_file(spec, path)
        return path
    if path.is_file():
        verify_file(spec, path)
        return path
    if offline_mode(offline):
        raise _offline_error(spec, path)
    url = source_url(spec)
    assert url is not None
    prefix = _torchvision_hash_prefix(path.name) if isinstance(src, TorchvisionSource) else None
    digest = download(url, path, expected_sha256(spec), sha256_prefix=prefix, reporter=reporter)
    if isinstance(src, TorchvisionSource):
        record_hash(spec.name, digest)
    return path


def record_hash(name: str, digest: str) -> None:
    index = _read_json(_hash_index_path())
    index[name] = digest
    _write_json(_hash_index_path(), index)


def verify_file(spec: WeightsSpec, path: Path, *, remove_bad: bool = True) -> str:
    """Hash `path` in full and compare. A mismatching cached download is removed; a mismatching
    bundled or package file is reported (it is not ours to delete)."""
    digest = sha256_file(path)
    expected = expected_sha256(spec)
    ok = True
    if expected is not None:
        ok = digest == expected.lower()
    elif isinstance(spec.source, TorchvisionSource):
        prefix = _torchvision_hash_prefix(path.name)
        ok = prefix is None or digest.startswith(prefix)
        if ok:
            record_hash(spec.name, digest)
    if not ok:
        removable = isinstance(spec.source, (UrlSource, TorchvisionSource))
        if removable and remove_bad:
            path.unlink(missing_ok=True)
        raise WeightsError(
            f"weights file {path} for {spec.name!r} has SHA-256 {digest}, expected {expected or 'a match'}"
            + ("; it was removed: fetch it again" if removable and remove_bad else "; reinstall or re-import it")
        )
    return digest


def is_present(spec: WeightsSpec) -> bool:
    try:
        return local_path(spec).is_file()
    except WeightsError:
        return False


# --- reading tensors safely --------------------------------------------------------------------


def read_state_dict(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state_dict, our metadata) from a .safetensors file or a torch file loaded with
    weights_only=True. Anything else is refused."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            tensors: dict[str, Any] = {}
            with safe_open(str(path), framework="pt") as f:
                meta_raw = (f.metadata() or {}).get(META_KEY)
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(f"{path} is not a valid safetensors file ({exc})") from None
        meta = json.loads(meta_raw) if meta_raw else {}
        return tensors, meta
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{path} cannot be loaded safely (weights_only=True refused it: {str(exc).splitlines()[0]}); "
            "only plain state dicts of tensors are accepted"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return obj, {}


def save_weights_file(path: Path, state_dict: dict[str, Any], meta: dict[str, Any]) -> str:
    """Write a .safetensors file with our metadata (arch, config, labels, preprocess, metrics…)
    atomically; return its SHA-256. This is what training writes and inference reads."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    # safetensors refuses tensors that share memory; clone those.
    seen: set[int] = set()
    for k, v in tensors.items():
        ptr = v.data_ptr()
        if ptr in seen and v.numel():
            tensors[k] = v.clone()
        seen.add(ptr)
    with atomic_target(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    return sha256_file(Path(path))


# --- imports -----------------------------------------------------------------------------------


def _imported_dir() -> Path:
    return dl_home() / "imported"


def imported_index() -> dict[str, dict[str, Any]]:
    return _read_json(_imported_dir() / "index.json")


def add_import_record(record: dict[str, Any]) -> None:
    index = imported_index()
    index[record["name"]] = record
    _write_json(_imported_dir() / "index.json", index)


def remove_import_record(name: str) -> bool:
    index = imported_index()
    rec = index.pop(name, None)
    if rec is None:
        return False
    (_imported_dir() / rec["file"]).unlink(missing_ok=True)
    _write_json(_imported_dir() / "index.json", index)
    return True


def imported_file(name: str) -> Path:
    return _imported_dir() / f"{name}.safetensors"


def remove_cached(spec: WeightsSpec) -> list[Path]:
    """Delete what the cache holds for an entry (downloads and imports; never bundled files)."""
    removed: list[Path] = []
    if isinstance(spec.source, ImportedSource):
        path = local_path(spec)
        if remove_import_record(spec.name):
            removed.append(path)
        return removed
    if isinstance(spec.source, (UrlSource, TorchvisionSource)):
        path = local_path(spec)
        if path.is_file():
            path.unlink()
            removed.append(path)
        if isinstance(spec.source, UrlSource) and path.parent.is_dir() and not any(path.parent.iterdir()):
            shutil.rmtree(path.parent, ignore_errors=True)
    return removed
