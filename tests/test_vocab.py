"""The caption vocabulary: ids, round trips, specials."""

from __future__ import annotations

import pytest

from dlcli.text.vocab import END, PAD, SPECIALS, START, UNK, Vocab, tokenize


def test_tokenize_lowercases_and_drops_punctuation() -> None:
    assert tokenize("A Large red Circle, left of a cat.") == ["a", "large", "red", "circle", "left", "of", "a", "cat"]


def test_build_orders_by_frequency_then_alphabet() -> None:
    v = Vocab.build(["b a a", "c b a"])
    assert v.tokens == SPECIALS + ("a", "b", "c")
    assert (v.pad_id, v.start_id, v.end_id, v.unk_id) == (0, 1, 2, 3)
    assert [v.tokens[i] for i in range(4)] == [PAD, START, END, UNK]


def test_round_trip_text_ids_text() -> None:
    v = Vocab.build(["a large red circle left of a small blue square"])
    ids = v.encode("a large red circle left of a small blue square")
    assert ids[0] == v.start_id and ids[-1] == v.end_id
    assert v.decode(ids) == "a large red circle left of a small blue square"


def test_unknown_words_become_unk_and_decode_stops_at_end() -> None:
    v = Vocab.build(["red circle"])
    ids = v.encode("red zebra")
    assert ids[2] == v.unk_id
    assert v.decode([v.start_id, v.id("red"), v.end_id, v.id("circle")]) == "red"
    assert v.decode([v.id("red"), v.pad_id, v.id("circle")]) == "red circle"


def test_json_and_list_round_trip() -> None:
    v = Vocab.build(["one two three", "two three", "three"], min_count=2)
    assert "one" not in v and v.tokens[4:] == ("three", "two")
    assert Vocab.from_json(v.to_json()) == v
    assert Vocab.from_list(v.to_list()) == v


def test_max_size_counts_the_specials() -> None:
    v = Vocab.build(["a a a b b c"], max_size=6)
    assert len(v) == 6 and v.tokens[4:] == ("a", "b")


@pytest.mark.parametrize("tokens", [("a", "b"), SPECIALS + ("x", "x"), (START, PAD, END, UNK, "a")])
def test_bad_vocabularies_are_refused(tokens: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        Vocab.from_list(tokens)
