"""The caption vocabulary: words <-> ids, with the four special tokens NIC needs.

The vocabulary travels with the weights as the entry's `labels` (a list of tokens in id order), so
a model file is never separated from the words its output layer stands for. Torch-free.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

PAD = "<pad>"
START = "<start>"
END = "<end>"
UNK = "<unk>"
# Fixed ids: <pad> is 0 so that zero-padded batches need no extra bookkeeping.
SPECIALS = (PAD, START, END, UNK)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case words; punctuation is dropped (COCO captions end in '.', some do not)."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {', '.join(SPECIALS)}")
        if len(set(self.tokens)) != len(self.tokens):
            dup = [t for t, n in Counter(self.tokens).items() if n > 1]
            raise ValueError(f"duplicate tokens in vocabulary: {', '.join(dup[:5])}")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    # --- building -------------------------------------------------------------------------------

    @classmethod
    def build(cls, captions: Iterable[str], *, min_count: int = 1, max_size: int | None = None) -> "Vocab":
        """Words seen at least `min_count` times, most frequent first (ties alphabetical, so the
        same captions always give the same ids); at most `max_size` tokens including specials."""
        counts = Counter(w for c in captions for w in tokenize(c))
        words = sorted((w for w, n in counts.items() if n >= min_count and w not in SPECIALS),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(0, max_size - len(SPECIALS))]
        return cls(SPECIALS + tuple(words))

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> "Vocab":
        return cls(tuple(str(t) for t in tokens))

    def to_list(self) -> list[str]:
        return list(self.tokens)

    def to_json(self) -> str:
        return json.dumps(self.to_list())

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        return cls.from_list(json.loads(text))

    # --- ids ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, word: object) -> bool:
        return word in self._index  # type: ignore[attr-defined]

    def id(self, word: str) -> int:
        return self._index.get(word, self._index[UNK])  # type: ignore[attr-defined]

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def start_id(self) -> int:
        return 1

    @property
    def end_id(self) -> int:
        return 2

    @property
    def unk_id(self) -> int:
        return 3

    def encode(self, text: str, *, add_start: bool = True, add_end: bool = True) -> list[int]:
        ids = [self.id(w) for w in tokenize(text)]
        return ([self.start_id] if add_start else []) + ids + ([self.end_id] if add_end else [])

    def words(self, ids: Iterable[int]) -> list[str]:
        """Ids -> words, stopping at <end>; <start> and <pad> are skipped."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i in (self.start_id, self.pad_id):
                continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.words(ids))
