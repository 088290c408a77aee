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
import threading
from typing import Any, Iterable

from dlcli.errors import WeightsError
from dlcli.weights.spec import Arch, BundledSource, ImportedSource, TorchvisionSource, WeightsSpec, split_name

TASKS = ("classify", "detect", "segment", "caption", "stylize", "generate", "dqn")

_archs: dict[str, Arch] = {}
_weights: dict[str, WeightsSpec] = {}
_defaults: dict[str, str] = {}
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


def _manifest_entries() -> Iterable[WeightsSpec]:
    from dlcli.weights.store import bundled_dir

    manifest = bundled_dir() / "manifest.json"
    if not manifest.is_file():
        return []
    data = json.loads(manifest.read_text(encoding="utf-8"))
    return [spec_from_record(rec, BundledSource(rec["file"], rec["sha256"])) for rec in data.get("weights", [])]


def _imported_entries() -> Iterable[WeightsSpec]:
    from dlcli.weights.store import imported_index

    return [
        spec_from_record(rec, ImportedSource(rec["file"], rec["sha256"], rec.get("original", "")))
        for rec in imported_index().values()
    ]


def spec_from_record(rec: dict[str, Any], source: Any) -> WeightsSpec:
    """A manifest/import record (JSON) -> WeightsSpec. The arch's task is filled in when known."""
    arch_name = rec.get("arch") or split_name(rec["name"])[0]
    task = rec.get("task") or (_archs[arch_name].task if arch_name in _archs else "classify")
    labels = rec.get("labels")
    return WeightsSpec(
        name=rec["name"],
        arch=arch_name,
        task=task,
        source=source,
        preprocess=rec.get("preprocess", "imagenet"),
        preprocess_args=dict(rec.get("preprocess_args", {})),
        labels=tuple(labels) if labels is not None else None,
        license=rec.get("license", ""),
        metrics=dict(rec.get("metrics", {})),
        recipe=rec.get("recipe", ""),
        config=dict(rec.get("config", {})),
        description=rec.get("description", ""),
        extra=dict(rec.get("extra", {})),
    )


def ensure_loaded() -> None:
    """Read the manifest and the user's imports once (the task modules come from dlcli.catalog)."""
    with _lock:
        if not _loaded:
            load_files()


def load_files() -> None:
    """(Re)register the bundled manifest's entries and the user's imports."""
    global _loaded
    with _lock:
        for spec in _manifest_entries():
            register(spec, replace=True, default=bool(spec.extra.get("default")))
        _loaded = True
        reload_imported()


def reload_imported() -> None:
    """Re-read the user's imports (after `dl weights import` / `rm`)."""
    with _lock:
        for name in [n for n, s in _weights.items() if isinstance(s.source, ImportedSource)]:
            del _weights[name]
        for spec in _imported_entries():
            register(spec, replace=True)


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
