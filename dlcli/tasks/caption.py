"""Captioning: NIC (CNN encoder + LSTM decoder) with greedy or beam search.

Registers the `nic` architecture and the `nic` preprocessing preset (squash to size x size, ImageNet
mean/std). Weights entries come from the bundled manifest (`nic.scenes`); their `labels` are the
vocabulary in id order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from dlcli.errors import InputError, WeightsError
from dlcli.progress import NullReporter, Reporter
from dlcli.weights.presets import Preset, register_preset
from dlcli.weights.registry import register_arch
from dlcli.weights.spec import Arch, WeightsSpec

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import CaptionEvalReport, CaptionReport
    from dlcli.device import Runtime

DEFAULT_BEAM = 3
DEFAULT_MAX_LENGTH = 24
FOR_PHOTOS = "no photo captioner ships with dlcli: train one on COCO (dl caption train --captions FILE.json --images DIR)"
"""What the domain notice of the scene captioner suggests instead."""
MAX_BEAM = 50


def _build_nic(**config: Any) -> Any:
    from dlcli.models.nic import build_nic

    return build_nic(**config)


register_arch(Arch(
    "nic", "caption", _build_nic,
    description="Show and Tell: CNN encoder (ResNet or a small CNN) -> LSTM decoder over a vocabulary",
    default_config={"vocab_size": 1004, "embed_dim": 256, "hidden_dim": 512, "backbone": "resnet18"},
))


def _nic_preset(spec: WeightsSpec, args: dict[str, Any]) -> Callable[[Any], Any]:
    """The whole image squashed to size x size (no crop: a caption is about everything in the
    picture), scaled to 0..1 and normalised with ImageNet mean/std."""
    import torch
    from torchvision.transforms import v2 as T

    size = int(args.get("size", 224))
    return T.Compose([
        T.ToImage(),
        T.Resize((size, size), antialias=True),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(args.get("mean", [0.485, 0.456, 0.406]), args.get("std", [0.229, 0.224, 0.225])),
    ])


register_preset(Preset("nic", _nic_preset, "RGB", "whole image resized to size x size, ImageNet mean/std"))


@dataclass
class Captioner:
    """A loaded NIC with its vocabulary and preprocessing."""

    loaded: Any  # dlcli.weights.loader.LoadedWeights
    vocab: Any  # dlcli.text.vocab.Vocab
    transform: Callable[[Any], Any]
    mode: str
    max_length: int

    @property
    def model(self) -> Any:
        return self.loaded.model


def load_captioner(name: str | None = None, *, weights_file: str | Path | None = None, offline: bool = False,
                   reporter: Reporter | None = None) -> Captioner:
    """The named (or default) caption weights, or a file `dl caption train` wrote."""
    from dlcli.weights.presets import transform_for
    from dlcli.text.vocab import Vocab
    from dlcli.weights.loader import load_model

    loaded = load_model(name, task="caption", file=weights_file, offline=offline, reporter=reporter)
    if not loaded.labels:
        raise WeightsError(f"weights {loaded.name!r} carry no vocabulary (labels); they cannot caption")
    try:
        vocab = Vocab.from_list(loaded.labels)
    except ValueError as exc:
        raise WeightsError(f"weights {loaded.name!r} have a broken vocabulary: {exc}") from None
    if len(vocab) != loaded.model.vocab_size:
        raise WeightsError(f"weights {loaded.name!r}: vocabulary of {len(vocab)} words for a model of "
                           f"{loaded.model.vocab_size} outputs")
    transform, mode = transform_for(loaded.spec)
    max_length = int(loaded.spec.extra.get("max_length", DEFAULT_MAX_LENGTH))
    return Captioner(loaded, vocab, transform, mode, max_length)


def caption_batch(net: Any, vocab: Any, tensors: Sequence[Any], runtime: Runtime, *, beam_size: int,
                  limit: int) -> list[tuple[Any, ...]]:
    """Preprocessed images -> per image its CaptionCandidates, best first (greedy when beam_size is 1)."""
    import torch

    from dlcli.results import CaptionCandidate
    from dlcli.text.search import beam_search, greedy

    batch = runtime.to(torch.stack(list(tensors)))
    with runtime.inference():
        feats = net.encode(batch).float()
        if beam_size == 1:
            found = [[c] for c in greedy(net, feats, start_id=vocab.start_id, end_id=vocab.end_id,
                                         max_length=limit)]
        else:
            found = [beam_search(net, f, start_id=vocab.start_id, end_id=vocab.end_id, max_length=limit,
                                 beam_size=beam_size) for f in feats]
    return [tuple(CaptionCandidate(vocab.decode(c.tokens), c.log_prob, len(c.tokens), c.finished) for c in cands)
            for cands in found]


def check_options(beam_size: int, max_length: int | None, batch_size: int) -> None:
    """The bounds of captioning's options (images and video alike), checked before any work."""
    if not 1 <= beam_size <= MAX_BEAM:
        raise InputError(f"--beam-size must be between 1 and {MAX_BEAM}, got {beam_size}")
    if max_length is not None and not 1 <= max_length <= 200:
        raise InputError(f"--max-length must be between 1 and 200 words, got {max_length}")
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")


def caption_images(
    inputs: Sequence[str],
    *,
    runtime: Runtime,
    model: str | None = None,
    weights_file: str | Path | None = None,
    captioner: Captioner | None = None,
    beam_size: int = DEFAULT_BEAM,
    max_length: int | None = None,
    batch_size: int = 16,
    offline: bool = False,
    strict: bool = False,
    reporter: Reporter | None = None,
) -> CaptionReport:
    """Caption every input image; returns a CaptionReport (captions in input order; an unreadable
    input becomes a failure unless `strict`, which raises at the first one)."""
    import time

    from dlcli.domain import DomainGuard
    from dlcli.media import iter_images
    from dlcli.results import InputFailure, CaptionItem, CaptionReport, Provenance

    check_options(beam_size, max_length, batch_size)
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    cap = captioner or load_captioner(model, weights_file=weights_file, offline=offline, reporter=reporter)
    limit = max_length or cap.max_length
    net = runtime.place(cap.model)
    vocab = cap.vocab

    done: list[Any] = []
    failures: list[Any] = []
    pending: list[tuple[int, str, Any, str | None]] = []
    guard = DomainGuard(cap.loaded.spec, FOR_PHOTOS, reporter)

    def flush() -> None:
        if not pending:
            return
        found = caption_batch(net, vocab, [t for _, _, t, _ in pending], runtime, beam_size=beam_size, limit=limit)
        for (index, source, _, warning), candidates in zip(pending, found):
            done.append(CaptionItem(index, source, candidates[0].caption, candidates[0].log_prob, candidates, warning))
        reporter.advance(len(pending))
        pending.clear()

    reporter.start("captioning", total=None)
    for index, loaded in enumerate(iter_images(list(inputs), mode=cap.mode, offline=offline, strict=strict)):
        if isinstance(loaded, InputError):
            failures.append(InputFailure(index, _source_of(loaded), loaded.message))
            continue
        pending.append((index, loaded.source, cap.transform(loaded.image), guard.warning(loaded.image)))
        if len(pending) >= batch_size:
            flush()
    flush()
    reporter.finish()
    return CaptionReport(cap.loaded.name, beam_size, limit, tuple(done), tuple(failures),
                         time.perf_counter() - t0, Provenance.collect(runtime, cap.loaded.name, cap.loaded.sha256))


def _source_of(error: InputError) -> str:
    # media errors read "<input>: what went wrong"; keep the input's name for the report.
    return error.message.split(": ", 1)[0]


# --- `dl caption eval` ------------------------------------------------------------------------------


def evaluate_weights(runtime: Runtime, *, model: str | None = None, weights_file: str | Path | None = None,
                     data: str = "scenes", count: int = 500, seed: int | None = None, captions_file: str | None = None,
                     images_dir: str | None = None, beam_size: int = 3, max_length: int | None = None,
                     batch_size: int = 32, examples: int = 5, offline: bool = False,
                     reporter: Reporter | None = None, pictures_dir: Path | None = None) -> CaptionEvalReport:
    """Corpus BLEU-1..4 of a captioner on a held-out set: `count` scenes of the world `seed`
    (default the test seed; the training run used seeds 0 and 1) or every image of a COCO captions file."""
    from dlcli.results import CaptionEvalReport, Provenance
    from dlcli.data.captions import CaptionSet, CocoCaptions, SceneCaptions
    from dlcli.evaluation.caption import evaluate

    if not 1 <= beam_size <= MAX_BEAM:
        raise InputError(f"--beam-size must be between 1 and {MAX_BEAM}, got {beam_size}")
    if max_length is not None and not 1 <= max_length <= 200:
        raise InputError(f"--max-length must be between 1 and 200 words, got {max_length}")
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    cap = load_captioner(model, weights_file=weights_file, offline=offline, reporter=reporter)
    image_size = int(cap.loaded.spec.preprocess_args.get("size", 224))
    if captions_file or images_dir:
        if not captions_file or not images_dir:
            raise InputError("COCO evaluation needs both --captions FILE.json and --images DIR")
        dataset: CaptionSet = CocoCaptions(Path(captions_file), Path(images_dir), image_size)
        what = f"{Path(captions_file).name} ({len(dataset)} images)"
    elif data == "scenes":
        from dlcli.data.scenes import TEST_SEED

        if count < 1:
            raise InputError(f"--count must be at least 1, got {count}")
        seed = TEST_SEED if seed is None else seed
        dataset = SceneCaptions(count, seed, image_size, reporter, "test scenes")
        what = f"scenes seed {seed} ({count} images)"
    else:
        raise InputError(f"unknown data {data!r}: use --data scenes, or --captions FILE --images DIR")
    net = runtime.place(cap.model)
    limit = max_length or cap.max_length
    bleu, shown = evaluate(net, cap.vocab, dataset, runtime, beam_size=beam_size, max_length=limit,
                           batch_size=batch_size, reporter=reporter, keep_examples=examples)
    written: list[Path] = []
    if pictures_dir is not None and shown:  # the shown examples as a sheet: image, caption, references
        from dlcli.evaluation import pictures

        pixels = dataset.images([int(e["index"]) for e in shown]).permute(0, 2, 3, 1).numpy()
        written = pictures.captions([{**e, "image": im} for e, im in zip(shown, pixels)], pictures_dir)
    return CaptionEvalReport(cap.loaded.name, what, len(dataset), beam_size, limit, bleu, tuple(shown),
                             time.perf_counter() - t0, Provenance.collect(runtime, cap.loaded.name, cap.loaded.sha256),
                             pictures=tuple(str(p) for p in written))
