"""Corpus BLEU against values worked out by hand (the arithmetic is in each test)."""

from __future__ import annotations

import math

import pytest

from dlcli.evaluation.bleu import corpus_bleu, corpus_stats


def s(text: str) -> list[str]:
    return text.split()


def test_identical_sentences_score_one() -> None:
    b = corpus_bleu([s("a large red circle left of a small blue square")],
                    [[s("a large red circle left of a small blue square")]])
    assert b == {"bleu1": 1.0, "bleu2": 1.0, "bleu3": 1.0, "bleu4": 1.0}


def test_cat_on_the_mat_by_hand() -> None:
    # cand: the cat sat on the mat / ref: the cat is on the mat (both 6 words, BP = 1)
    # 1-grams: the x2, cat, on, mat match -> 5/6; 2-grams: "the cat", "on the", "the mat" -> 3/5
    # 3-grams: "on the mat" -> 1/4; 4-grams: none of 3 -> 0
    st = corpus_stats([s("the cat sat on the mat")], [[s("the cat is on the mat")]])
    assert st.matches == (5, 3, 1, 0) and st.totals == (6, 5, 4, 3)
    b = corpus_bleu([s("the cat sat on the mat")], [[s("the cat is on the mat")]])
    assert b["bleu1"] == pytest.approx(5 / 6)
    assert b["bleu2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))  # = sqrt(1/2)
    assert b["bleu3"] == pytest.approx(0.5)  # (5/6 * 3/5 * 1/4) ** (1/3) = (1/8) ** (1/3)
    assert b["bleu4"] == 0.0


def test_counts_are_clipped_by_the_reference() -> None:
    # Papineni's example: 7 x "the" against a reference holding "the" twice -> 2/7; 7 > 6 words, BP = 1
    b = corpus_bleu([s("the the the the the the the")], [[s("the cat is on the mat")]], max_n=1)
    assert b["bleu1"] == pytest.approx(2 / 7)


def test_clipping_uses_the_best_reference_per_ngram() -> None:
    # "the" appears at most twice in any one reference -> clipped to 2 of 3
    b = corpus_bleu([s("the the the")], [[s("the cat the"), s("the dog")]], max_n=1)
    assert b["bleu1"] == pytest.approx(2 / 3)


def test_brevity_penalty() -> None:
    # 2 words against 6: every n-gram matches, BP = exp(1 - 6/2) = exp(-2)
    b = corpus_bleu([s("the cat")], [[s("the cat is on the mat")]], max_n=2)
    assert b["bleu1"] == pytest.approx(math.exp(-2))
    assert b["bleu2"] == pytest.approx(math.exp(-2))


def test_closest_reference_length_ties_go_to_the_shorter() -> None:
    # 3 words, references of 2 and 4 words: both 1 away -> r = 2 < c, no penalty
    st = corpus_stats([s("a b c")], [[s("a b"), s("a b c d")]])
    assert st.ref_len == 2 and st.brevity_penalty == 1.0
    # references of 1 and 5 words for a 4-word candidate: 5 is closer -> BP = exp(1 - 5/4)
    st = corpus_stats([s("a b c d")], [[s("a"), s("a b c d e")]])
    assert st.ref_len == 5 and st.brevity_penalty == pytest.approx(math.exp(1 - 5 / 4))


def test_corpus_level_sums_counts_before_dividing() -> None:
    # sentence 1: "a b" vs "a b" -> 2/2 unigrams, 1/1 bigrams; sentence 2: "c d" vs "c e" -> 1/2, 0/1
    # corpus: p1 = 3/4, p2 = 1/2 -> BLEU-2 = sqrt(3/8) (the mean of sentence BLEUs would be 0.5)
    b = corpus_bleu([s("a b"), s("c d")], [[s("a b")], [s("c e")]], max_n=2)
    assert b["bleu1"] == pytest.approx(0.75)
    assert b["bleu2"] == pytest.approx(math.sqrt(3 / 8))


def test_empty_candidate_and_bad_input() -> None:
    assert corpus_bleu([[]], [[s("a b")]])["bleu1"] == 0.0
    with pytest.raises(ValueError):
        corpus_bleu([s("a")], [])
    with pytest.raises(ValueError):
        corpus_bleu([s("a")], [[]])
