"""Caption search over a NIC-like decoder: greedy and beam search.

The decoder is anything with `init_state(features) -> state` and
`step(tokens (B,), state) -> (log_probs (B, V), state)` where the state is a tuple of tensors whose
dimension 1 is the batch (an LSTM's (h, c)). Captions hold at most `max_length` words (the <end>
token is not counted); a caption that reaches the limit is cut there.

Beam search keeps the `beam_size` best partial captions by total log-probability; a candidate
that picks <end> is finished and the beam shrinks by one (so a beam of k returns k candidates).
With beam_size 1 it makes exactly the greedy choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Candidate:
    tokens: tuple[int, ...]  # word ids, without <start> and <end>
    log_prob: float  # sum of the log-probabilities of the words and (when finished) of <end>
    finished: bool  # False when cut at max_length


def _select(state: Any, index: torch.Tensor) -> Any:
    return tuple(s.index_select(1, index) for s in state)


def _check(max_length: int, beam_size: int = 1) -> None:
    if max_length < 1:
        raise ValueError("max_length must be at least 1")
    if beam_size < 1:
        raise ValueError("beam_size must be at least 1")


@torch.no_grad()
def greedy(model: Any, features: torch.Tensor, *, start_id: int, end_id: int, max_length: int) -> list[Candidate]:
    """The most likely word at every step, for a batch of image embeddings (B, E)."""
    _check(max_length)
    batch = features.shape[0]
    state = model.init_state(features)
    tokens = torch.full((batch,), start_id, dtype=torch.long, device=features.device)
    words: list[list[int]] = [[] for _ in range(batch)]
    scores = [0.0] * batch
    done = [False] * batch
    for _ in range(max_length):
        log_probs, state = model.step(tokens, state)
        best_lp, best = log_probs.topk(1, dim=-1)
        tokens = best.squeeze(1)
        for i, (tok, lp) in enumerate(zip(tokens.tolist(), best_lp.squeeze(1).tolist())):
            if done[i]:
                continue
            scores[i] += lp
            if tok == end_id:
                done[i] = True
            else:
                words[i].append(tok)
        if all(done):
            break
    return [Candidate(tuple(w), s, d) for w, s, d in zip(words, scores, done)]


@torch.no_grad()
def beam_search(model: Any, features: torch.Tensor, *, start_id: int, end_id: int, max_length: int,
                beam_size: int = 3) -> list[Candidate]:
    """Beam search for ONE image embedding ((E,) or (1, E)); candidates best first."""
    _check(max_length, beam_size)
    feats = features.reshape(1, -1)
    state = model.init_state(feats)
    device = feats.device
    live_tokens: list[list[int]] = [[]]
    live_scores = torch.zeros(1, device=device)
    last = torch.full((1,), start_id, dtype=torch.long, device=device)
    finished: list[Candidate] = []
    for _ in range(max_length):
        log_probs, state = model.step(last, state)
        vocab = log_probs.shape[-1]
        total = (live_scores.unsqueeze(1) + log_probs.float()).reshape(-1)
        k = min(beam_size - len(finished), total.numel())
        top_scores, top_index = total.topk(k)
        keep_rows: list[int] = []
        keep_tokens: list[int] = []
        keep_scores: list[float] = []
        new_live: list[list[int]] = []
        for score, flat in zip(top_scores.tolist(), top_index.tolist()):
            row, tok = divmod(flat, vocab)
            if tok == end_id:
                finished.append(Candidate(tuple(live_tokens[row]), score, True))
            else:
                keep_rows.append(row)
                keep_tokens.append(tok)
                keep_scores.append(score)
                new_live.append(live_tokens[row] + [tok])
        if not new_live:
            break
        index = torch.tensor(keep_rows, dtype=torch.long, device=device)
        state = _select(state, index)
        last = torch.tensor(keep_tokens, dtype=torch.long, device=device)
        live_scores = torch.tensor(keep_scores, device=device)
        live_tokens = new_live
    else:
        # Out of length: what is still live is cut at max_length words.
        finished += [Candidate(tuple(t), s, False) for t, s in zip(live_tokens, live_scores.tolist())]
    return sorted(finished, key=lambda c: -c.log_prob)
