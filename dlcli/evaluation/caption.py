"""Captioning evaluation: generate the best caption per image (greedy or beam search) and score
the corpus against its references with BLEU-1..4."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from dlcli.data.captions import CaptionSet, normalize
from dlcli.evaluation.bleu import corpus_bleu
from dlcli.progress import NullReporter, Reporter
from dlcli.text.search import beam_search, greedy
from dlcli.text.vocab import Vocab, tokenize

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime



@torch.no_grad()
def generate(model: Any, vocab: Vocab, pixels: torch.Tensor, runtime: Runtime, *, beam_size: int = 1,
             max_length: int = 24) -> list[list[Any]]:
    """Candidates (dlcli.text.search.Candidate lists, best first) for uint8 images (B, 3, H, W)."""
    with runtime.inference():
        feats = model.encode(runtime.to(normalize(pixels))).float()
        if beam_size == 1:
            return [[c] for c in greedy(model, feats, start_id=vocab.start_id, end_id=vocab.end_id,
                                        max_length=max_length)]
        return [beam_search(model, f, start_id=vocab.start_id, end_id=vocab.end_id, max_length=max_length,
                            beam_size=beam_size) for f in feats]


def evaluate(model: Any, vocab: Vocab, data: CaptionSet, runtime: Runtime, *, beam_size: int = 1,
             max_length: int = 24, batch_size: int = 64, reporter: Reporter | None = None,
             keep_examples: int = 0) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Corpus BLEU-1..4 of the best caption per image against its references, and a few examples."""
    reporter = reporter or NullReporter()
    model.eval()
    cands: list[list[str]] = []
    refs: list[list[list[str]]] = []
    examples: list[dict[str, Any]] = []
    reporter.start("captioning", total=len(data))
    for lo in range(0, len(data), batch_size):
        idx = list(range(lo, min(lo + batch_size, len(data))))
        best = [c[0] for c in generate(model, vocab, data.images(idx), runtime, beam_size=beam_size,
                                       max_length=max_length)]
        for i, cand in zip(idx, best):
            words = vocab.words(cand.tokens)
            cands.append(words)
            refs.append([tokenize(r) for r in data.captions(i)])
            if len(examples) < keep_examples:
                examples.append({"index": i, "caption": " ".join(words), "references": data.captions(i)})
        reporter.advance(len(idx))
    reporter.finish()
    return corpus_bleu(cands, refs), examples
