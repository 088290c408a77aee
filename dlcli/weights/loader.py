"""From a name or a file to a ready nn.Module: resolve, fetch, verify, build, load strictly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dlcli.errors import DLError, InputError, NetworkError, WeightsError
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


# A model built with random weights (dl summary, dl profile, --random-init) has no file to be
# checked against; its configuration alone must not ask for more than this.
MAX_RANDOM_INIT_BYTES = 2 << 30
MAX_LABELS_FILE_BYTES = 16 << 20


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_config(spec: WeightsSpec) -> dict[str, Any]:
    """The arguments the architecture is built with: its defaults, overridden by the weights' config
    (a file written before an option existed leaves it out and gets the default)."""
    return {**registry.get_arch(spec.arch).default_config, **spec.config}


def _build(spec: WeightsSpec, device: str | None = None) -> Any:
    import torch

    arch = registry.get_arch(spec.arch)
    config = model_config(spec)
    try:
        if device is None:
            return arch.build(**config)
        with torch.device(device):
            return arch.build(**config)
    except DLError:
        raise
    except Exception as exc:  # a config of the wrong types or values (from a file, an index)
        lines = str(exc).strip().splitlines()
        raise WeightsError(f"cannot build {spec.arch!r} with config {_short(config)}: "
                           f"{lines[0] if lines else type(exc).__name__}") from None


def build(spec: WeightsSpec) -> Any:
    return _build(spec)


def build_meta(spec: WeightsSpec) -> Any:
    """The entry's model on the meta device: its tensors' shapes without their memory, so a
    config that asks for a huge model (width=100000 in a file's metadata) is caught before any
    allocation."""
    return _build(spec, "meta")


def _mismatch(own: dict[str, Any], state_dict: dict[str, Any]) -> list[str]:
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        parts.append(f"wrong shape {len(wrong)} (e.g. {'; '.join(wrong[:3])})")
    return parts


def check_fits(spec: WeightsSpec, state_dict: dict[str, Any], what: str) -> Any:
    """Check, on the meta device, that the entry's architecture and config have exactly the file's
    tensors; return the meta model (for output checks). Nothing real is allocated before this."""
    meta = build_meta(spec)
    parts = _mismatch(meta.state_dict(), state_dict)
    if parts:
        raise WeightsError(f"{what} does not fit the architecture: {', '.join(parts)} ({spec.arch} with config "
                           f"{_short(dict(spec.config), 120)})")
    return meta


def check_random_init(spec: WeightsSpec) -> None:
    """A randomly initialised model must stay within MAX_RANDOM_INIT_BYTES (its config is all
    there is to go by)."""
    meta = build_meta(spec)
    size = sum(t.numel() * t.element_size() for t in meta.state_dict().values())
    if size > MAX_RANDOM_INIT_BYTES:
        raise WeightsError(f"{spec.name}: its config {_short(dict(spec.config), 120)} asks for {size / 2**30:.1f} GiB "
                           f"of tensors, over the limit of {MAX_RANDOM_INIT_BYTES >> 30} GiB")


def output_count(spec: WeightsSpec, meta_model: Any) -> int | None:
    """How many classes the model scores (None when it cannot be told without running it):
    classify and segment by a forward pass on the meta device, detect by its box predictor."""
    import torch

    try:
        if spec.task == "detect":
            head = meta_model.roi_heads.box_predictor.cls_score
            return int(head.out_features)
        if spec.task not in ("classify", "segment"):
            return None
        from dlcli.weights.presets import input_shape_for

        shape = input_shape_for(spec)
        with torch.no_grad():
            out = meta_model.eval()(torch.empty((1, *shape), device="meta"))
        if isinstance(out, dict):
            out = out.get("out")
        if isinstance(out, (tuple, list)):
            out = out[0]
        if hasattr(out, "logits"):
            out = out.logits
        return int(out.shape[1]) if getattr(out, "dim", lambda: 0)() >= 2 else None
    except DLError:
        raise
    except Exception:  # a model the meta device cannot run: the count is not known here
        return None


def check_labels(spec: WeightsSpec, labels: list[str] | None, meta_model: Any, *, user: bool = False) -> None:
    """Refuse labels whose count differs from the model's outputs (a 10-class net given ImageNet's
    1000 names would call a digit "hammerhead")."""
    if labels is None:
        return
    n = output_count(spec, meta_model)
    if n is not None and n != len(labels):
        err = InputError if user else WeightsError
        raise err(f"{len(labels)} labels for {spec.name} ({spec.arch}), which has {n} outputs: "
                  "give exactly one label per output")


def read_labels(value: str) -> list[str]:
    """--labels: a UTF-8 text file (one label a line), `imagenet`, or the name of an entry to copy
    from. A binary, huge or non-regular file is an InputError."""
    from dlcli.media import read_regular_file

    path = Path(value).expanduser()
    if path.exists() or path.is_symlink():
        data = read_regular_file(path, f"--labels {value}", max_bytes=MAX_LABELS_FILE_BYTES)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"--labels {value}: not a UTF-8 text file (one label a line)") from None
        if "\x00" in text:
            raise InputError(f"--labels {value}: a binary file, not text with one label a line")
        labels = [line.strip() for line in text.splitlines() if line.strip()]
        if not labels:
            raise InputError(f"--labels {value}: the file holds no labels (one per line)")
        if len(labels) > registry.MAX_LABELS:
            raise InputError(f"--labels {value}: {len(labels):,} labels is over the limit of {registry.MAX_LABELS:,}")
        return labels
    if value == "imagenet":
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return list(_IMAGENET_CATEGORIES)
    labels = labels_for(registry.get(value))
    if labels is None:
        raise InputError(f"--labels {value}: that entry has no labels; give a text file with one label per line")
    return labels


def load_into(model: Any, state_dict: dict[str, Any], what: str) -> None:
    """Strict load with a message that says which tensors do not fit."""
    parts = _mismatch(model.state_dict(), state_dict)
    if parts:
        raise WeightsError(f"{what} does not fit the architecture: {', '.join(parts)}")
    model.load_state_dict(state_dict, strict=True)


def _finalize(spec: WeightsSpec, model: Any) -> Any:
    arch = registry.get_arch(spec.arch)
    if arch.finalize is not None:
        model = arch.finalize(model, model_config(spec)) or model
    return model.eval()


def spec_from_file(path: Path, meta: dict[str, Any], sha256: str) -> WeightsSpec:
    """A weights file we wrote (its metadata names the arch) as an ad-hoc entry."""
    arch = meta.get("arch")
    if not arch:
        raise WeightsError(
            f"{path} carries no dlcli metadata (architecture, labels, preprocessing); bring it in with "
            "`dl weights import ARCH.TAG FILE` instead"
        )
    if not isinstance(arch, str):
        raise WeightsError(f"{path}: its metadata's 'arch' is a {type(arch).__name__}, not a name; the file is corrupt")
    record = dict(meta)
    record.setdefault("name", f"{arch}.file")
    try:
        return registry.spec_from_record(record, ImportedSource(path.name, sha256, str(path)))
    except WeightsError as exc:
        raise WeightsError(f"{path}: its metadata is corrupt ({exc.message})") from None


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
            what = ("is a folder" if path.is_dir() else "is not a regular file") if path.exists() else "does not exist"
            raise InputError(f"weights file {path} {what}")
        sha = store.sha256_file(path)
        state, meta = store.read_state_dict(path)
        spec = spec_from_file(path, meta, sha)
        if spec.task != task:
            raise WeightsError(f"{path} holds {spec.task!r} weights ({spec.arch}), not {task!r}")
        meta_model = check_fits(spec, state, str(path))
        labels = labels_for(spec)
        check_labels(spec, labels, meta_model)
        model = build(spec)
        load_into(model, state, str(path))
        return LoadedWeights(_finalize(spec, model), spec, path, sha, labels, meta)

    spec = registry.resolve(name, task)
    if random_init:
        check_random_init(spec)
        return LoadedWeights(_finalize(spec, build(spec)), spec, None, None, labels_for(spec), {})
    path = store.fetch(spec, offline=offline, reporter=reporter)
    state, meta = store.read_state_dict(path)
    meta_model = check_fits(spec, state, f"weights {spec.name!r} ({path})")
    labels = labels_for(spec)
    check_labels(spec, labels, meta_model)
    model = build(spec)
    load_into(model, state, f"weights {spec.name!r} ({path})")
    return LoadedWeights(_finalize(spec, model), spec, path, store.expected_sha256(spec), labels, meta)


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
    if not registry.valid_name(name):
        raise InputError(f"weights name {name!r} must be ARCH.TAG of letters, digits, _ and - (e.g. resnet50.mine)")
    arch = registry.get_arch(arch_name)
    path = Path(file).expanduser()
    if not path.is_file():
        what = ("is a folder" if path.is_dir() else "is not a regular file") if path.exists() else "does not exist"
        raise InputError(f"file {path} {what}")
    # Under the index lock from the check to the new record: two imports of one name take turns,
    # and the second sees the first (it is refused without --force).
    with store.index_lock():
        registry.reload_imported()
        return _import_locked(name, arch_name, arch, path, preprocess=preprocess, preprocess_args=preprocess_args,
                              labels=labels, license=license, force=force)


def _import_locked(name: str, arch_name: str, arch: Any, path: Path, *, preprocess: str | None,
                   preprocess_args: dict[str, Any] | None, labels: list[str] | None, license: str,
                   force: bool) -> WeightsSpec:
    existing = registry.lookup(name)
    if existing is not None and not isinstance(existing.source, ImportedSource):
        raise WeightsError(f"{name!r} is a built-in entry; import under another tag (e.g. {arch_name}.mine)")
    if existing is not None and not force:
        raise WeightsError(f"{name!r} is already imported; pass --force to replace it")
    if existing is None and registry.corrupt_entry(name) is not None and not force:
        raise WeightsError(f"{name!r} has a corrupt record in the import index; pass --force to replace it "
                           f"or `dl weights rm {name}` first")
    user_labels = labels is not None

    importer = _importers.get(arch_name)
    if importer is not None and path.suffix not in (".safetensors", ".pt", ".pth", ".bin"):
        state, meta = importer(path), {}
    else:
        state, meta = store.read_state_dict(path)

    if labels is None and meta.get("labels"):
        if not isinstance(meta["labels"], list) or not all(isinstance(v, str) for v in meta["labels"]):
            raise WeightsError(f"{path}: its metadata's 'labels' is not a list of names; the file is corrupt")
        labels = list(meta["labels"])
    labels_from_base = labels is None
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
    try:
        spec = registry.spec_from_record(record, ImportedSource(record["file"], "", record["original"]))
    except WeightsError as exc:
        raise WeightsError(f"{path}: its metadata is corrupt ({exc.message})") from None
    meta_model = check_fits(spec, state, str(path))
    try:
        check_labels(spec, list(spec.labels) if spec.labels is not None else None, meta_model, user=user_labels)
    except WeightsError:
        if not labels_from_base:
            raise
        # The base entry's names do not fit a re-headed model (a 10-class fine-tune of an ImageNet
        # net): store no names rather than wrong ones.
        record["labels"] = None
        spec = registry.spec_from_record(record, ImportedSource(record["file"], "", record["original"]))
    model = build(spec)
    load_into(model, state, str(path))
    sha = store.save_weights_file(store.imported_file(name), model.state_dict(), {k: v for k, v in record.items()
                                                                                   if k not in ("file", "original")})
    record["sha256"] = sha
    store.add_import_record(record)
    registry.reload_imported()
    return registry.get(name)


def remove_weights(name: str) -> tuple[list[Path], list[str]]:
    """`dl weights rm NAME`: (files removed, notes). A download or an import is removed from the
    cache; a record of the import index that was refused as corrupt is dropped too (deleting only
    inside $DL_HOME/imported, never where its `file` field pointed); bundled files stay."""
    from dlcli.weights.spec import BundledSource, PackageSource

    index_path = str(store.imported_dir() / "index.json")
    corrupt = registry.corrupt_entry(name)
    if corrupt is not None and corrupt[0] == index_path:
        found, removed, notes = store.remove_import_record(name)
        registry.reload_imported()
        return removed, notes + ([f"dropped the corrupt record {name!r} from {index_path}"] if found else [])
    spec = registry.get(name)
    if isinstance(spec.source, (BundledSource, PackageSource)):
        raise InputError(f"{name!r} ships with dlcli or a pip package; there is nothing to remove from the cache")
    removed = store.remove_cached(spec)
    registry.reload_imported()
    return removed, []
