"""From a name or a file to a ready nn.Module: resolve, fetch, verify, build, load strictly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dlcli.errors import InputError, NetworkError, WeightsError
from dlcli.progress import NullReporter, Reporter
from dlcli.weights import registry, store
from dlcli.weights.spec import ImportedSource, TorchvisionSource, WeightsSpec, split_name

# arch name -> function(path) -> state_dict, for file formats other than ours (e.g. the book's pickle).
_importers: dict[str, Callable[[Path], dict[str, Any]]] = {}


def register_importer(arch: str, fn: Callable[[Path], dict[str, Any]]) -> None:
    _importers[arch] = fn


@dataclass
class LoadedWeights:
    """A model in eval mode on the CPU, with everything a task needs to feed and read it."""

    model: Any
    spec: WeightsSpec
    path: Path | None
    sha256: str | None
    labels: list[str] | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


def labels_for(spec: WeightsSpec) -> list[str] | None:
    if spec.labels is not None:
        return list(spec.labels)
    if isinstance(spec.source, TorchvisionSource):
        cats = store.torchvision_weights(spec.source).meta.get("categories")
        return list(cats) if cats else None
    return None


def build(spec: WeightsSpec) -> Any:
    arch = registry.get_arch(spec.arch)
    config = {**arch.default_config, **spec.config}
    try:
        return arch.build(**config)
    except TypeError as exc:
        raise WeightsError(f"cannot build {spec.arch!r} with config {config}: {exc}") from None


def load_into(model: Any, state_dict: dict[str, Any], what: str) -> None:
    """Strict load with a message that says which tensors do not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"wrong shape {len(wrong)} (e.g. {'; '.join(wrong[:3])})")
        raise WeightsError(f"{what} does not fit the architecture: {', '.join(parts)}")
    model.load_state_dict(state_dict, strict=True)


def _finalize(spec: WeightsSpec, model: Any) -> Any:
    arch = registry.get_arch(spec.arch)
    if arch.finalize is not None:
        model = arch.finalize(model, {**arch.default_config, **spec.config}) or model
    return model.eval()


def spec_from_file(path: Path, meta: dict[str, Any], sha256: str) -> WeightsSpec:
    """A weights file we wrote (its metadata names the arch) as an ad-hoc entry."""
    arch = meta.get("arch")
    if not arch:
        raise WeightsError(
            f"{path} carries no dlcli metadata (architecture, labels, preprocessing); bring it in with "
            "`dl weights import ARCH.TAG FILE` instead"
        )
    record = dict(meta)
    record.setdefault("name", f"{arch}.file")
    return registry.spec_from_record(record, ImportedSource(path.name, sha256, str(path)))


def load_model(
    name: str | None = None,
    *,
    task: str,
    file: str | Path | None = None,
    offline: bool = False,
    reporter: Reporter | None = None,
    random_init: bool = False,
) -> LoadedWeights:
    """Resolve weights by name (or the task's default) or from a file, fetch and verify them, and
    return the model loaded strictly, in eval mode, on the CPU (the Runtime moves it)."""
    if file is not None:
        if name is not None:
            raise InputError("give either --model NAME or --weights-file FILE, not both")
        path = Path(file).expanduser()
        if not path.is_file():
            raise InputError(f"weights file {path} does not exist")
        sha = store.sha256_file(path)
        state, meta = store.read_state_dict(path)
        spec = spec_from_file(path, meta, sha)
        if spec.task != task:
            raise WeightsError(f"{path} holds {spec.task!r} weights ({spec.arch}), not {task!r}")
        model = build(spec)
        load_into(model, state, str(path))
        return LoadedWeights(_finalize(spec, model), spec, path, sha, labels_for(spec), meta)

    spec = registry.resolve(name, task)
    model = build(spec)
    if random_init:
        return LoadedWeights(_finalize(spec, model), spec, None, None, labels_for(spec), {})
    path = store.fetch(spec, offline=offline, reporter=reporter)
    state, meta = store.read_state_dict(path)
    load_into(model, state, f"weights {spec.name!r} ({path})")
    return LoadedWeights(_finalize(spec, model), spec, path, store.expected_sha256(spec), labels_for(spec), meta)


def load_default(task: str, fallback: str, *, what: str, offline: bool = False,
                 reporter: Reporter | None = None) -> LoadedWeights:
    """The task's default weights, or `fallback` (weights that are on every install: bundled, or a
    pip package of the plain install) when the default is a download that is not on this machine
    and cannot be fetched (offline, or the download fails). The fallback comes with one notice that
    names it (`what` says what it is) and why it was used."""
    reporter = reporter or NullReporter()
    default = registry.default_for(task)
    spare = registry.lookup(fallback)
    if not isinstance(default.source, TorchvisionSource) or spare is None or store.is_present(default):
        return load_model(None, task=task, offline=offline, reporter=reporter)
    if store.offline_mode(offline):
        reason = f"offline and {default.name} is not downloaded"
    else:
        try:
            return load_model(default.name, task=task, offline=False, reporter=reporter)
        except NetworkError as exc:
            reason = exc.message
    try:
        loaded = load_model(fallback, task=task, offline=True, reporter=reporter)
    except WeightsError as exc:
        raise WeightsError(f"{reason}; the offline fallback {fallback} cannot be used either: {exc.message}") from None
    reporter.message(f"{reason}: using {fallback} ({what}); name --model to choose")
    return loaded


def import_weights(
    name: str,
    file: str | Path,
    *,
    preprocess: str | None = None,
    preprocess_args: dict[str, Any] | None = None,
    labels: list[str] | None = None,
    license: str = "",
    force: bool = False,
) -> WeightsSpec:
    """Check that a local file's tensors fit `name`'s architecture, then store it as safetensors
    under $DL_HOME/imported with its hash; `name` then works everywhere a registered name does."""
    try:
        arch_name, _ = split_name(name)
    except ValueError:
        raise InputError(f"weights name {name!r} must be ARCH.TAG (e.g. resnet50.mine)") from None
    arch = registry.get_arch(arch_name)
    path = Path(file).expanduser()
    if not path.is_file():
        raise InputError(f"file {path} does not exist")
    existing = registry.lookup(name)
    if existing is not None and not isinstance(existing.source, ImportedSource):
        raise WeightsError(f"{name!r} is a built-in entry; import under another tag (e.g. {arch_name}.mine)")
    if existing is not None and not force:
        raise WeightsError(f"{name!r} is already imported; pass --force to replace it")

    importer = _importers.get(arch_name)
    if importer is not None and path.suffix not in (".safetensors", ".pt", ".pth", ".bin"):
        state, meta = importer(path), {}
    else:
        state, meta = store.read_state_dict(path)

    if labels is None and meta.get("labels"):
        labels = list(meta["labels"])
    base = next((s for s in registry.entries(arch.task) if s.arch == arch_name), None)
    record: dict[str, Any] = {
        "name": name,
        "arch": arch_name,
        "task": arch.task,
        "file": f"{name}.safetensors",
        "original": str(path.resolve()),
        "preprocess": preprocess or meta.get("preprocess") or (base.preprocess if base else "imagenet"),
        "preprocess_args": preprocess_args or meta.get("preprocess_args") or (dict(base.preprocess_args) if base else {}),
        "labels": labels if labels is not None else (labels_for(base) if base else None),
        "license": license or meta.get("license", ""),
        "config": meta.get("config") or (dict(base.config) if base else {}),
        "metrics": meta.get("metrics", {}),
        "recipe": meta.get("recipe", f"imported from {path.name}"),
        "extra": meta.get("extra", {}),
    }
    spec = registry.spec_from_record(record, ImportedSource(record["file"], "", record["original"]))
    model = build(spec)
    load_into(model, state, str(path))
    sha = store.save_weights_file(store.imported_file(name), model.state_dict(), {k: v for k, v in record.items()
                                                                                   if k not in ("file", "original")})
    record["sha256"] = sha
    store.add_import_record(record)
    registry.reload_imported()
    return registry.get(name)
