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

from dlcli.atomic import atomic_target, file_lock
from dlcli.offline import offline_mode as _offline_mode
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


# The one offline switch lives in dlcli.offline; re-exported here for the callers that know it here.
offline_mode = _offline_mode


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


MAX_INDEX_BYTES = 64 << 20


def _read_json(path: Path) -> dict[str, Any]:
    """One of our JSON index files, which must hold an object. A missing file is empty; a broken
    one (not JSON, not an object, not a regular file) is a WeightsError that says what to do."""
    if not path.exists() and not path.is_symlink():
        return {}
    from dlcli.errors import InputError
    from dlcli.media import read_regular_file

    try:
        data = json.loads(read_regular_file(path, str(path), max_bytes=MAX_INDEX_BYTES).decode("utf-8"))
    except InputError as exc:
        raise WeightsError(f"cannot read {exc.message}; delete it and retry") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise WeightsError(f"cannot read {path}: not valid JSON ({exc}); delete it and retry") from None
    if not isinstance(data, dict):
        raise WeightsError(f"cannot read {path}: it holds a JSON {type(data).__name__}, not an object; "
                           "delete it and retry")
    return data


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
    digest = _read_json(_hash_index_path()).get(spec.name)
    if digest is not None and (not isinstance(digest, str) or re.fullmatch(r"[0-9a-f]{64}", digest) is None):
        raise WeightsError(f"{_hash_index_path()} holds {digest!r} for {spec.name!r}, not a SHA-256; delete the "
                           "file and retry (the hashes are recorded again)")
    return digest


def inside(folder: Path, name: str, what: str) -> Path:
    """folder/name, refused unless it resolves to a file directly inside `folder` (a name from a
    manifest or index must never lead elsewhere, through `..`, an absolute path or a link)."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise WeightsError(f"{what}: file name {name!r} is not a plain name inside {folder}; the entry is corrupt")
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise WeightsError(f"{what}: {path} leads outside {folder}; the entry is corrupt")
    return path


def local_path(spec: WeightsSpec) -> Path:
    """Where this entry's file is (or would be, once fetched)."""
    src = spec.source
    if isinstance(src, BundledSource):
        return inside(bundled_dir(), src.filename, spec.name)
    if isinstance(src, UrlSource):
        return inside(dl_home() / "weights" / inside(dl_home() / "weights", spec.name, spec.name).name,
                      src.filename, spec.name)
    if isinstance(src, TorchvisionSource):
        url = torchvision_weights(src).url
        return torch_home() / "hub" / "checkpoints" / Path(urllib.parse.urlparse(url).path).name
    if isinstance(src, ImportedSource):
        return inside(imported_dir(), src.filename, spec.name)
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
    with index_lock():
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


def _refusal_detail(exc: BaseException) -> str:
    """What torch's weights_only unpickler refused, without its advice to retry with
    weights_only=False (we never load pickles that way, and never suggest it)."""
    text = str(exc)
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, re.S)
    body = (m.group(1) if m else text).strip()
    detail = body.splitlines()[0] if body else ""
    detail = detail.split(" was not an allowed global")[0].split(" Please use")[0]
    if "weights_only" in detail or not detail:
        detail = type(exc).__name__
    return detail[:160]


def read_metadata(raw: str | None, path: Path) -> dict[str, Any]:
    """Our JSON metadata of a safetensors file: an object, or a WeightsError saying what is wrong."""
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise WeightsError(f"{path}: its dlcli metadata is not valid JSON ({exc}); the file is corrupt") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: its dlcli metadata is a JSON {type(meta).__name__}, not an object; "
                           "the file is corrupt")
    return meta


def read_state_dict(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state_dict, our metadata) from a .safetensors file or a torch file loaded with
    weights_only=True. Anything else is refused, with a message that never suggests a less safe
    way of loading."""
    import warnings

    import torch

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise WeightsError(f"{path} is empty (0 bytes): not a weights file; it was cut short, copy it again")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            tensors: dict[str, Any] = {}
            with safe_open(str(path), framework="pt") as f:
                meta_raw = (f.metadata() or {}).get(META_KEY)
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as exc:  # safetensors raises its own error types
            lines = str(exc).strip().splitlines()
            raise WeightsError(f"{path} is not a valid safetensors file ({lines[0] if lines else type(exc).__name__})") from None
        return tensors, read_metadata(meta_raw, path)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols and suggests weights_only=False: not for our users.
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{path} cannot be loaded safely ({_refusal_detail(exc)}): only a state dict of tensors (.pth, .pt) or "
            "a .safetensors file is accepted, never a pickle that needs code to load"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                        for k, v in obj.items()):
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


def imported_dir() -> Path:
    return dl_home() / "imported"


_imported_dir = imported_dir


def index_lock() -> Any:
    """The lock held around every read-modify-write of $DL_HOME's index files: two `dl weights
    import` runs of one name take turns, so the second sees the first's record."""
    return file_lock(dl_home() / ".index.lock")


def imported_index() -> dict[str, Any]:
    """The user's import index as stored (records are checked by the registry, which refuses
    corrupt ones)."""
    return _read_json(imported_dir() / "index.json")


def add_import_record(record: dict[str, Any]) -> None:
    """Add or replace a record (the caller holds index_lock())."""
    index = imported_index()
    index[record["name"]] = record
    _write_json(imported_dir() / "index.json", index)


def remove_import_record(name: str) -> tuple[bool, list[Path], list[str]]:
    """Drop `name` from the import index: (found, files removed, notes). Only a file directly
    inside $DL_HOME/imported is deleted (a link there is removed, never what it points to); a
    record whose `file` leads elsewhere is dropped and its target left alone."""
    with index_lock():
        index = imported_index()
        if name not in index:
            return False, [], []
        rec = index.pop(name)
        removed: list[Path] = []
        notes: list[str] = []
        file = rec.get("file") if isinstance(rec, dict) else None
        folder = imported_dir()
        shared = {r.get("file") for r in index.values() if isinstance(r, dict)}
        if isinstance(file, str) and file and "/" not in file and "\\" not in file and file not in (".", ".."):
            path = folder / file
            if file in shared:  # a (corrupt) record pointing at another entry's file: keep that file
                notes.append(f"kept {path}: another entry uses it")
            elif path.is_symlink() or path.is_file():
                path.unlink()
                removed.append(path)
        elif file is not None:
            notes.append(f"left {file!r} alone: the record pointed outside {folder}")
        _write_json(imported_dir() / "index.json", index)
    return True, removed, notes


def imported_file(name: str) -> Path:
    return inside(imported_dir(), f"{name}.safetensors", name)


def remove_cached(spec: WeightsSpec) -> list[Path]:
    """Delete what the cache holds for an entry (downloads and imports; never bundled files)."""
    removed: list[Path] = []
    if isinstance(spec.source, ImportedSource):
        return remove_import_record(spec.name)[1]
    if isinstance(spec.source, (UrlSource, TorchvisionSource)):
        path = local_path(spec)
        if path.is_file():
            path.unlink()
            removed.append(path)
        if isinstance(spec.source, UrlSource) and path.parent.is_dir() and not any(path.parent.iterdir()):
            shutil.rmtree(path.parent, ignore_errors=True)
    return removed
