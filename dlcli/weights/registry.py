"""Names: architectures, weights entries `arch.tag`, task defaults, "did you mean".

Entries come from three places:
- the task modules, which register their architectures and weights when imported. The registry is
  passive: it never imports them; `dlcli.catalog.load()` does, for whoever needs the full catalogue;
- the bundled manifest `weights/manifest.json` (weights we trained; see store.bundled_dir());
- the user's imports ($DL_HOME/imported/index.json, written by `dl weights import`).
The two files are read on first use and again by `load_files()` (after the catalogue is imported,
so a manifest default wins over a task module's).
A path is never guessed to be a name: files come in through --weights-file or `dl weights import`.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
from pathlib import Path
from typing import Any, Iterable

from dlcli.errors import WeightsError
from dlcli.weights.spec import Arch, BundledSource, ImportedSource, TorchvisionSource, WeightsSpec, split_name

TASKS = ("classify", "detect", "segment", "caption", "stylize", "generate", "dqn")
# ARCH.TAG of letters, digits, _ and - (dots in the tag): a name is also a file name in the cache,
# so it can never hold a path separator or start with a dot.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*\.[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_LABELS = 100_000

_archs: dict[str, Arch] = {}
_weights: dict[str, WeightsSpec] = {}
_defaults: dict[str, str] = {}
# name -> (file, reason) for records of the manifest or the user's index that were refused as
# corrupt: they are not registered, and naming one says why (`dl doctor` lists them).
_corrupt: dict[str, tuple[str, str]] = {}
_problems: list[str] = []
_loaded = False
_lock = threading.RLock()


def register_arch(arch: Arch) -> Arch:
    if arch.task not in TASKS:
        raise ValueError(f"arch {arch.name!r}: unknown task {arch.task!r}")
    existing = _archs.get(arch.name)
    if existing is not None and existing.build is not arch.build:
        raise ValueError(f"duplicate architecture name {arch.name!r}")
    _archs[arch.name] = arch
    return arch


def register_torchvision(arch: str, task: str, build: Any, enum: str, tag: str, *, license: str,
                         description: str, metrics: dict[str, float] | None = None,
                         default_config: dict[str, Any] | None = None, finalize: Any = None,
                         finetune_config: dict[str, Any] | None = None, default: bool = False) -> WeightsSpec:
    """A torchvision architecture and its pretrained `arch.tag` entry (the enum member, e.g.
    "ResNet50_Weights.IMAGENET1K_V2", is resolved and its hash checked by the loader)."""
    register_arch(Arch(arch, task, build, description=f"torchvision {arch}", default_config=dict(default_config or {}),
                       finalize=finalize, finetune_config=dict(finetune_config or {})))
    return register(WeightsSpec(
        name=f"{arch}.{tag}", arch=arch, task=task, source=TorchvisionSource(enum), preprocess="imagenet",
        license=license, metrics=dict(metrics or {}), recipe=f"torchvision {enum} (recipe in its meta)",
        description=description,
    ), default=default)


def register(spec: WeightsSpec, *, default: bool = False, replace: bool = False) -> WeightsSpec:
    """Add a weights entry. Names are `arch.tag`; a second entry with the same name is refused."""
    try:
        arch, _ = split_name(spec.name)
    except ValueError:
        raise ValueError(f"weights name {spec.name!r} is not of the form arch.tag") from None
    if arch != spec.arch:
        raise ValueError(f"weights name {spec.name!r} does not start with its arch {spec.arch!r}")
    if spec.name in _weights and not replace and _weights[spec.name] != spec:
        raise ValueError(f"duplicate weights name {spec.name!r}")
    _weights[spec.name] = spec
    if default:
        _defaults[spec.task] = spec.name
    return spec


def set_default(task: str, name: str) -> None:
    _defaults[task] = name


def valid_name(name: Any) -> bool:
    return isinstance(name, str) and len(name) <= 200 and NAME_RE.match(name) is not None


def _file_field(rec: dict[str, Any], folder: Path, where: str) -> str:
    """A record's `file`: a plain file name that resolves inside `folder` (its own folder), never
    a path that leads elsewhere (`/tmp/v`, `../x`, a link out of the folder)."""
    name = rec.get("file")
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or "\x00" in name:
        raise WeightsError(f"{where}: 'file' must be a file name inside {folder}, not {name!r}")
    target = (folder / name).resolve()
    if target.parent != folder.resolve():
        raise WeightsError(f"{where}: 'file' {name!r} leads outside {folder}")
    return name


def _sha_field(rec: dict[str, Any], where: str) -> str:
    sha = rec.get("sha256")
    if not isinstance(sha, str) or re.fullmatch(r"[0-9a-fA-F]{64}", sha) is None:
        raise WeightsError(f"{where}: 'sha256' must be 64 hex digits, not {sha!r}")
    return sha


def _refuse(name: Any, path: Path, reason: str) -> None:
    _problems.append(f"{path}: {reason}")
    if isinstance(name, str):
        _corrupt[name] = (str(path), reason)


def _manifest_entries() -> Iterable[WeightsSpec]:
    from dlcli.weights.store import bundled_dir

    folder = bundled_dir()
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return []
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _refuse(None, manifest, f"unreadable ({exc}); reinstall dlcli")
        return []
    records = data.get("weights") if isinstance(data, dict) else None
    if not isinstance(records, list):
        _refuse(None, manifest, "not an object with a list 'weights'; reinstall dlcli")
        return []
    out = []
    for i, rec in enumerate(records):
        name = rec.get("name") if isinstance(rec, dict) else None
        try:
            if not isinstance(rec, dict):
                raise WeightsError(f"record {i} is a {type(rec).__name__}, not an object")
            where = f"entry {name!r}"
            out.append(spec_from_record(rec, BundledSource(_file_field(rec, folder, where), _sha_field(rec, where))))
        except WeightsError as exc:
            _refuse(name, manifest, f"{exc.message}; reinstall dlcli")
    return out


def _imported_entries() -> Iterable[WeightsSpec]:
    from dlcli.weights import store

    folder = store.imported_dir()
    path = folder / "index.json"
    try:
        index = store.imported_index()
    except WeightsError as exc:
        _problems.append(f"{path}: {exc.message}")
        return []
    out = []
    for key, rec in index.items():
        name = rec.get("name") if isinstance(rec, dict) else key
        try:
            if not isinstance(rec, dict):
                raise WeightsError(f"record {key!r} is a {type(rec).__name__}, not an object")
            if name != key:
                raise WeightsError(f"record {key!r} names itself {name!r}")
            where = f"entry {name!r}"
            builtin = _weights.get(name)
            if builtin is not None and not isinstance(builtin.source, ImportedSource):
                raise WeightsError(f"{where} has the name of a built-in entry, which an import may not replace")
            original = rec.get("original", "")
            if not isinstance(original, str):
                raise WeightsError(f"{where}: 'original' must be a path string")
            out.append(spec_from_record(rec, ImportedSource(_file_field(rec, folder, where), _sha_field(rec, where),
                                                            original)))
        except WeightsError as exc:
            _refuse(name, path, f"{exc.message}; remove it with `dl weights rm {name}` and import it again")
    return out


_RECORD_TYPES: dict[str, type | tuple[type, ...]] = {
    "arch": str, "task": str, "preprocess": str, "preprocess_args": dict, "license": str, "metrics": dict,
    "recipe": str, "config": dict, "description": str, "extra": dict,
}


def check_record(rec: Any, where: str) -> dict[str, Any]:
    """The shape of a weights record (manifest, import index, a file's metadata): an object with a
    valid `name`, strings and objects where they belong, labels a list of strings. Anything else
    is a WeightsError naming the field, never a KeyError or TypeError later."""
    if not isinstance(rec, dict):
        raise WeightsError(f"{where}: the record is a {type(rec).__name__}, not a JSON object")
    name = rec.get("name")
    if not valid_name(name):
        raise WeightsError(f"{where}: 'name' must be ARCH.TAG (letters, digits, _ - .), not {name!r}")
    for key, kind in _RECORD_TYPES.items():
        if key in rec and rec[key] is not None and not isinstance(rec[key], kind):
            raise WeightsError(f"{where}: {key!r} must be a {'string' if kind is str else 'JSON object'}, "
                               f"not {type(rec[key]).__name__}")
    arch = rec.get("arch") or split_name(name)[0]
    if arch != split_name(name)[0]:
        raise WeightsError(f"{where}: name {name!r} does not start with its arch {arch!r}")
    if rec.get("task") is not None and rec["task"] not in TASKS:
        raise WeightsError(f"{where}: unknown task {rec['task']!r}")
    labels = rec.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
            raise WeightsError(f"{where}: 'labels' must be a list of strings")
        if not labels or len(labels) > MAX_LABELS:
            raise WeightsError(f"{where}: 'labels' must hold 1 to {MAX_LABELS:,} names, not {len(labels):,}")
    return rec


def spec_from_record(rec: dict[str, Any], source: Any) -> WeightsSpec:
    """A manifest/import record (JSON) -> WeightsSpec. The arch's task is filled in when known.
    The record's shape is checked first (check_record)."""
    check_record(rec, f"weights record {rec.get('name') if isinstance(rec, dict) else rec!r}")
    arch_name = rec.get("arch") or split_name(rec["name"])[0]
    task = rec.get("task") or (_archs[arch_name].task if arch_name in _archs else "classify")
    labels = rec.get("labels")
    return WeightsSpec(
        name=rec["name"],
        arch=arch_name,
        task=task,
        source=source,
        preprocess=rec.get("preprocess") or "imagenet",
        preprocess_args=dict(rec.get("preprocess_args") or {}),
        labels=tuple(labels) if labels is not None else None,
        license=rec.get("license") or "",
        metrics=dict(rec.get("metrics") or {}),
        recipe=rec.get("recipe") or "",
        config=dict(rec.get("config") or {}),
        description=rec.get("description") or "",
        extra=dict(rec.get("extra") or {}),
    )


def _index_stamp() -> tuple[str, int, int] | None:
    """Where the user's import index is and its size and mtime: when another process (or a test)
    changes it, the next lookup reads it again instead of trusting what this process saw."""
    from dlcli.weights.store import imported_dir

    path = imported_dir() / "index.json"
    try:
        st = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), st.st_size, st.st_mtime_ns)


_stamp: tuple[str, int, int] | None = None


def ensure_loaded() -> None:
    """Read the manifest and the user's imports once (the task modules come from dlcli.catalog),
    and the imports again whenever their index file changed."""
    with _lock:
        if not _loaded:
            load_files()
        elif _index_stamp() != _stamp:
            reload_imported()


def load_files() -> None:
    """(Re)register the bundled manifest's entries and the user's imports. A corrupt record is
    skipped and remembered (problems(), the error when it is named), so one bad record or file
    never stops every command, `dl doctor` included."""
    global _loaded
    with _lock:
        _corrupt.clear()
        _problems.clear()
        for spec in _manifest_entries():
            register(spec, replace=True, default=bool(spec.extra.get("default")))
        _loaded = True
        reload_imported()


def reload_imported() -> None:
    """Re-read the user's imports (after `dl weights import` / `rm`)."""
    from dlcli.weights.store import imported_dir

    global _stamp
    with _lock:
        _stamp = _index_stamp()
        for name in [n for n, s in _weights.items() if isinstance(s.source, ImportedSource)]:
            del _weights[name]
        index = str(imported_dir() / "index.json")
        for name in [n for n, (where, _) in _corrupt.items() if where == index]:
            del _corrupt[name]
        # Any index's old complaints go: only one cache is in use at a time ($DL_HOME may change
        # within one process, as in the tests), and this one is read again just below.
        _problems[:] = [p for p in _problems if not p.split(": ", 1)[0].endswith("index.json")]
        for spec in _imported_entries():
            register(spec, replace=True)


def problems() -> list[str]:
    """What was refused while reading the manifest and the user's index (for `dl doctor`)."""
    ensure_loaded()
    return list(_problems)


def corrupt_entry(name: str) -> tuple[str, str] | None:
    """(file, reason) when `name` is a record that was refused as corrupt."""
    ensure_loaded()
    return _corrupt.get(name)


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def lookup(name: str) -> WeightsSpec | None:
    ensure_loaded()
    return _weights.get(name)


def get(name: str) -> WeightsSpec:
    ensure_loaded()
    spec = _weights.get(name)
    if spec is not None:
        return spec
    if name in _corrupt:
        where, reason = _corrupt[name]
        raise WeightsError(f"weights {name!r} in {where} are refused as corrupt: {reason}")
    if name in _archs:
        matches = sorted(n for n, s in _weights.items() if s.arch == name)
        if matches:
            raise WeightsError(f"{name!r} is an architecture; name its weights: {', '.join(matches)}")
    raise WeightsError(
        f"unknown weights {name!r}{_suggest(name, _weights)} (see `dl weights list`)"
    )


def get_arch(name: str) -> Arch:
    ensure_loaded()
    arch = _archs.get(name)
    if arch is None:
        raise WeightsError(f"unknown architecture {name!r}{_suggest(name, _archs)}")
    return arch


def archs(task: str | None = None) -> list[Arch]:
    ensure_loaded()
    return sorted((a for a in _archs.values() if task is None or a.task == task), key=lambda a: a.name)


def entries(task: str | None = None) -> list[WeightsSpec]:
    ensure_loaded()
    if task is not None and task not in TASKS:
        raise WeightsError(f"unknown task {task!r}{_suggest(task, TASKS)} (tasks: {', '.join(TASKS)})")
    return sorted((s for s in _weights.values() if task is None or s.task == task), key=lambda s: s.name)


def default_for(task: str) -> WeightsSpec:
    ensure_loaded()
    name = _defaults.get(task)
    if name is None:
        raise WeightsError(f"no default weights for task {task!r}; pass --model NAME (see `dl weights list`)")
    return get(name)


def resolve(name: str | None, task: str) -> WeightsSpec:
    """The named entry, checked to belong to `task`, or the task's default when name is None."""
    spec = default_for(task) if name is None else get(name)
    if spec.task != task:
        others = ", ".join(s.name for s in entries(task)[:6])
        raise WeightsError(f"weights {spec.name!r} are for {spec.task!r}, not {task!r}; try one of: {others}")
    return spec
