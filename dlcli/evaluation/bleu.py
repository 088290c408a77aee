"""Corpus BLEU (Papineni et al., 2002), our own implementation.

Corpus level, as the papers report it: clipped n-gram matches and candidate n-gram counts are
summed over the whole corpus before the precisions are taken, and the brevity penalty compares the
total candidate length with the total of the reference lengths closest to each candidate (ties go
to the shorter reference). BLEU-N is the geometric mean of the 1..N precisions with equal weights
times the brevity penalty. No smoothing: a corpus with no matching N-gram scores 0, as in the paper.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

Tokens = Sequence[str]


def ngrams(tokens: Tokens, n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


@dataclass(frozen=True)
class BleuStats:
    """Sufficient statistics of a corpus: matches[n-1], totals[n-1], candidate and reference length."""

    matches: tuple[int, ...]
    totals: tuple[int, ...]
    cand_len: int
    ref_len: int

    def precision(self, n: int) -> float:
        t = self.totals[n - 1]
        return self.matches[n - 1] / t if t else 0.0

    @property
    def brevity_penalty(self) -> float:
        if self.cand_len == 0:
            return 0.0
        if self.cand_len > self.ref_len:
            return 1.0
        return math.exp(1.0 - self.ref_len / self.cand_len)

    def bleu(self, n: int) -> float:
        if not 1 <= n <= len(self.matches):
            raise ValueError(f"BLEU-{n} needs n in 1..{len(self.matches)}")
        precisions = [self.precision(k) for k in range(1, n + 1)]
        if min(precisions) == 0.0:
            return 0.0
        return self.brevity_penalty * math.exp(sum(math.log(p) for p in precisions) / n)


def corpus_stats(candidates: Sequence[Tokens], references: Sequence[Sequence[Tokens]], max_n: int = 4) -> BleuStats:
    """`candidates[i]` (a token list) is scored against every token list in `references[i]`."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference sets")
    matches = [0] * max_n
    totals = [0] * max_n
    cand_len = ref_len = 0
    for cand, refs in zip(candidates, references):
        if not refs:
            raise ValueError("every candidate needs at least one reference")
        cand = list(cand)
        cand_len += len(cand)
        # Closest reference length; on a tie the shorter one (as in the reference implementations).
        ref_len += min((abs(len(r) - len(cand)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            counts = ngrams(cand, n)
            if not counts:
                continue
            best: Counter[tuple[str, ...]] = Counter()
            for r in refs:
                best |= ngrams(list(r), n)  # max count of each n-gram over the references
            matches[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            totals[n - 1] += sum(counts.values())
    return BleuStats(tuple(matches), tuple(totals), cand_len, ref_len)


def corpus_bleu(candidates: Sequence[Tokens], references: Sequence[Sequence[Tokens]], max_n: int = 4) -> dict[str, float]:
    """{"bleu1": …, …, "bleuN": …} for the corpus."""
    stats = corpus_stats(candidates, references, max_n)
    return {f"bleu{n}": stats.bleu(n) for n in range(1, max_n + 1)}
