"""Tokenization (spaCy + fastai's rules) and the vocabulary."""
from __future__ import annotations

from collections import Counter

import pytest
from fastai.text.core import defaults as fastai_defaults
from hypothesis import given, settings
from hypothesis import strategies as st

from ulmtl.text import BOS, PAD, SPECIAL_TOKENS, UNK, Vocab, apply_rules, tokenize_batch, tokenize_texts

FASTAI_ORDER = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"]


# --------------------------------------------------------------------------- tokenization

def test_special_tokens_are_fastais_in_fastais_order():
    assert SPECIAL_TOKENS == FASTAI_ORDER == list(fastai_defaults.text_spec_tok)


def test_case_markers_and_bos():
    assert tokenize_texts(["Hello WORLD"]) == [["xxbos", "xxmaj", "hello", "xxup", "world"]]


def test_each_text_starts_with_bos_even_empty():
    out = tokenize_texts(["", "   ", "a b", "\n\nX"])
    assert [t[0] for t in out] == [BOS] * 4
    assert out[0] == [BOS] and out[1] == [BOS]


def test_character_and_word_repetitions():
    [tokens] = tokenize_texts(["This is coooool !!!!"])
    assert tokens[:2] == ["xxbos", "xxmaj"]
    i = tokens.index("xxrep")
    assert tokens[i - 1:i + 4] == ["c", "xxrep", "5", "o", "l"]
    assert tokens[-3:] == ["xxrep", "4", "!"]
    [tokens] = tokenize_texts(["very very very good"])
    assert tokens == ["xxbos", "xxwrep", "3", "very", "good"]


def test_html_and_spacing_rules():
    [tokens] = tokenize_texts(["great<br /><br />movie  #1 a/b"])
    assert "<br" not in " ".join(tokens)
    assert tokens == ["xxbos", "great", "\n\n", "movie", "#", "1", "a", "/", "b"]


@pytest.mark.parametrize("special", SPECIAL_TOKENS)
def test_special_tokens_kept_whole_by_spacy(special):
    # spaCy's punctuation and suffix rules would otherwise split e.g. "xxfld)" or "(xxbos".
    [tokens] = tokenize_texts([f"a {special} b ({special}) {special}."])
    assert tokens.count(special) == 3 + (special == BOS)
    assert all(t == special or special not in t for t in tokens)


def test_field_markers_survive():
    [tokens] = tokenize_texts(["xxfld 1 Title xxfld 2 the body"])
    assert tokens == ["xxbos", "xxfld", "1", "xxmaj", "title", "xxfld", "2", "the", "body"]


def test_apply_rules_matches_fastai_rules():
    from fastai.text.core import defaults
    text = "Hello WORLD, this is SO goooood <br />!!"
    expected = text
    for rule in defaults.text_proc_rules:
        expected = rule(expected)
    assert apply_rules(text) == expected


def test_tokenize_batch_adds_tokens_column():
    out = tokenize_batch({"text": ["Hi", "there"], "label": [0, 1]})
    assert out == {"tokens": [["xxbos", "xxmaj", "hi"], ["xxbos", "there"]]}
    assert tokenize_batch({"body": ["Hi"]}, text_column="body") == {"tokens": [["xxbos", "xxmaj", "hi"]]}


def test_non_string_inputs_are_stringified():
    assert tokenize_texts([12]) == [["xxbos", "12"]]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=200), min_size=1, max_size=4))
def test_tokenize_never_crashes_and_starts_with_bos(texts):
    out = tokenize_texts(texts)
    assert len(out) == len(texts)
    for tokens in out:
        assert tokens[0] == BOS
        assert all(isinstance(t, str) and t for t in tokens)


# --------------------------------------------------------------------------- vocabulary

def test_build_specials_first_then_frequency_then_alphabetical():
    counts = Counter({"the": 10, "cat": 3, "bat": 3, "rare": 1, "xxbos": 50, "xxmaj": 7})
    vocab = Vocab.build(counts, max_size=100, min_freq=2)
    assert vocab.itos[:9] == FASTAI_ORDER
    assert vocab.itos[9:12] == ["the", "bat", "cat"]
    assert "rare" not in vocab.stoi
    assert vocab.itos.count("xxbos") == 1
    assert len(vocab) % 8 == 0 and len(vocab) == 16
    assert all(t.startswith("xxfake") for t in vocab.itos[12:])


def test_build_min_freq():
    counts = Counter({"a": 5, "b": 3, "c": 2, "d": 1})
    assert [t for t in Vocab.build(counts, min_freq=3).itos[9:] if not t.startswith("xxfake")] == ["a", "b"]
    assert [t for t in Vocab.build(counts, min_freq=1).itos[9:] if not t.startswith("xxfake")] == [
        "a", "b", "c", "d"]


def test_build_max_size():
    counts = Counter({f"w{i:03d}": 1000 - i for i in range(200)})
    vocab = Vocab.build(counts, max_size=40, min_freq=1)
    assert len(vocab) == 40
    assert vocab.itos[9:] == [f"w{i:03d}" for i in range(31)]
    # A size that is not a multiple of 8: at most max_size real tokens, then padding.
    vocab = Vocab.build(counts, max_size=21, min_freq=1)
    real = [t for t in vocab.itos if not t.startswith("xxfake")]
    assert len(real) == 21 and len(vocab) == 24


def test_build_pads_to_multiple_of_8_with_unique_names():
    for n in range(0, 20):
        vocab = Vocab.build(Counter({f"t{i}": 5 for i in range(n)}), min_freq=1)
        assert len(vocab) % 8 == 0 and len(vocab) >= 9 + n
        assert len(set(vocab.itos)) == len(vocab.itos)


def test_build_padding_does_not_collide_with_a_real_xxfake_token():
    # 13 entries before padding: the first padding name would be "xxfake13".
    vocab = Vocab.build(Counter({"a": 5, "b": 5, "c": 5, "xxfake13": 5}), min_freq=1)
    assert len(vocab) == 16 and len(set(vocab.itos)) == 16
    assert vocab.stoi["xxfake13"] == 12


def test_build_large_vocab_is_fast_enough():
    # A list membership test made this quadratic (~30 s here); with a set it is instant. No timing
    # assertion: a regression shows up as a slow suite.
    counts = Counter({f"tok{i}": 100000 - i for i in range(70000)})
    vocab = Vocab.build(counts, max_size=60000, min_freq=2)
    assert len(vocab) == 60000


def test_unknown_tokens_map_to_zero_and_pad_id():
    vocab = Vocab.build(Counter({"known": 3}))
    assert vocab.numericalize(["known", "never-seen", UNK]) == [9, 0, 0]
    assert vocab.unk_id == 0 and vocab.pad_id == 1 and vocab.itos[vocab.pad_id] == PAD
    assert vocab.textify([9, 0, 2]) == ["known", UNK, BOS]


def test_duplicate_tokens_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        Vocab(["a", "b", "a"])


_TOKEN = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)


@settings(max_examples=50, deadline=None)
@given(st.lists(_TOKEN, min_size=1, max_size=40), st.data())
def test_numericalize_textify_round_trip(tokens, data):
    vocab = Vocab.build(Counter(tokens), max_size=60000, min_freq=1)
    sample = data.draw(st.lists(st.sampled_from(tokens), max_size=30))
    ids = vocab.numericalize(sample)
    assert all(0 <= i < len(vocab) for i in ids)
    assert vocab.textify(ids) == sample
    assert vocab.textify(vocab.numericalize(vocab.itos)) == vocab.itos


def test_special_tokens_stay_whole_without_spacy_special_cases():
    from ulmtl.text import SPECIAL_TOKENS, tokenize_texts
    text = " ".join(SPECIAL_TOKENS) + " (xxmaj) xxbos, " + "xxunk."
    tokens = tokenize_texts([text])[0]
    assert tokens[:1 + len(SPECIAL_TOKENS)] == ["xxbos"] + SPECIAL_TOKENS
    assert tokens[1 + len(SPECIAL_TOKENS):] == ["(", "xxmaj", ")", "xxbos", ",", "xxunk", "."]


def test_tokens_with_spaces_are_joined_with_fastai_space_marker():
    from ulmtl.text import tokenize_texts
    tokens = tokenize_texts(["a\n\nb"])[0]
    assert all(" " not in token for token in tokens)
    assert tokens[0] == "xxbos" and "a" in tokens and "b" in tokens


def _fastai_rules(text: str) -> str:
    from ulmtl.text import PRE_RULES
    for rule in PRE_RULES:
        text = rule(text)
    return text


_WORDS = st.sampled_from(["the", "The", "THE", "A", "a", "I", "McDonald", "HELLo", "U.S.", "NASA's",
                          "ÉCOLE", "École", "x", "!!!", "...", "a-b", "cool", "cooool", "#tag", "<br />",
                          "&amp;", "  ", "xxmaj", "Xx", "1999", "İstanbul", "a/b"])
_SPACES = st.sampled_from([" ", "  ", "\t", "\n", "\n\n", "\u00a0", "\u2003", " \x1c "])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_WORDS, _SPACES), max_size=25))
def test_apply_rules_equals_fastais_rules_one_by_one_on_word_sequences(pieces):
    text = "".join(word + space for word, space in pieces)
    assert apply_rules(text) == _fastai_rules(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="aAb .!\n\u2003\u3000é", max_size=30), min_size=1, max_size=6))
def test_rules_on_a_batch_equal_fastais_rules_text_by_text(texts):
    # Character repetitions are detected for the whole batch at once; no text may borrow another's.
    from ulmtl.text import _apply_rules_batch
    assert _apply_rules_batch(texts) == [_fastai_rules(text) for text in texts]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aAbBzZ .!/#\\\t\n\u00a0\u2003&;<>-'É", max_size=80))
def test_apply_rules_equals_fastais_rules_one_by_one_on_any_text(text):
    assert apply_rules(text) == _fastai_rules(text)


def test_tokens_of_repeated_texts_are_identical():
    # The token-string cache gives the same tokens on the first and later calls.
    texts = ["Hello WORLD, it's a  test\n\nof the cache", "xxbos again: Hello"]
    assert tokenize_texts(texts) == tokenize_texts(texts) == [tokenize_texts([t])[0] for t in texts]


def test_batch_rules_accept_lone_surrogates_and_find_repeats_after_them():
    from ulmtl.text import _apply_rules_batch
    texts = ["x\ud800aaa b", "cccc", "no repeats"]
    assert _apply_rules_batch(texts) == [_fastai_rules(text) for text in texts]
    assert "xxrep 3 a" in _apply_rules_batch(texts)[0]
