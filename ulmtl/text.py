"""Tokenization (spaCy + fastai's rules) and the vocabulary.

The rules and special tokens are fastai's own (``fastai.text.core``), so token streams and
vocabularies are compatible with fastai's published WikiText-103 models.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from fastai.text.core import (
    BOS, EOS, FLD, PAD, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK,
    fix_html, lowercase, replace_all_caps, replace_maj, replace_rep, replace_space,
    replace_wrep, rm_useless_spaces, spec_add_spaces,
)

SPECIAL_TOKENS = [UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ]
PRE_RULES = [fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces,
             replace_all_caps, replace_maj, lowercase]

_NLP = None
_TOKEN_STRINGS = None


def _spacy_tokenizer():
    """A blank English spaCy pipeline (no model download).

    fastai's special tokens (``xxbos``, ``xxmaj``, ...) are letters only, which spaCy never splits,
    so unlike fastai's ``SpacyTokenizer`` they are not registered as special cases, which spares
    spaCy's special-case matcher a run on every ``xxmaj``. A test checks they stay whole."""
    global _NLP, _TOKEN_STRINGS
    if _NLP is None:
        import spacy
        _NLP = spacy.blank("en")
        _TOKEN_STRINGS = _TokenStrings(_NLP.vocab.strings)
    return _NLP


def apply_rules(text: str) -> str:
    """fastai's text rules (``PRE_RULES``, in order): html fixes, repetitions, case markers,
    lowercase, leading xxbos. Same output as applying ``PRE_RULES`` one by one, in fewer passes
    (see :func:`_apply_rules_batch`; tests check the equivalence)."""
    return _apply_rules_batch([text])[0]


def _apply_rules_batch(texts: list[str]) -> list[str]:
    """:func:`apply_rules` on many texts. Character repetitions are found for all of them in one
    vectorized pass, word repetitions are only searched for when two neighbouring words are equal,
    and both case rules are one pass over capitalized words."""
    fixed = [fix_html(text) for text in texts]
    return [_rules_after_html(text, repeats) for text, repeats in zip(fixed, _has_char_repeats(fixed))]


_WHITESPACE = np.array([c for c in range(0x3000 + 1) if chr(c).isspace()], dtype=np.uint32)


def _has_char_repeats(texts: list[str]) -> np.ndarray:
    """For each text: does a non-whitespace character occur 3+ times in a row (what fastai's
    replace_rep rewrites)? One vectorized pass over the texts joined by newlines."""
    joined = np.frombuffer("\n".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    triple = np.flatnonzero((joined[:-2] == joined[1:-1]) & (joined[1:-1] == joined[2:]))
    triple = triple[~np.isin(joined[triple], _WHITESPACE)]
    ends = np.cumsum([len(text) + 1 for text in texts])
    found = np.zeros(len(texts), dtype=bool)
    found[np.searchsorted(ends, triple, side="right")] = True
    return found


def _rules_after_html(text: str, has_repeats: bool) -> str:
    if has_repeats:
        text = replace_rep(text)
    words = text.split()
    if any(map(str.__eq__, words, words[1:])):
        text = replace_wrep(text)
    text = rm_useless_spaces(spec_add_spaces(text))
    return lowercase(_CAPITALIZED_WORD.sub(_mark_case, text))


# fastai's replace_all_caps and replace_maj look at whitespace-delimited words: a word matching
# [A-Z]+[^a-z\s]* gets xxup, else one matching [A-Z][^A-Z\s]* gets xxmaj (one letter: neither).
# Every such word starts with [A-Z], so one pass over those words decides both.
_CAPITALIZED_WORD = re.compile(r"(?<!\S)[A-Z]\S*")
_ALL_CAPS = re.compile(r"[A-Z]+[^a-z\s]*")
_SENTENCE_CASE = re.compile(r"[A-Z][^A-Z\s]*")


def _mark_case(match: re.Match) -> str:
    word = match.group()
    if len(word) == 1:
        return word
    if _ALL_CAPS.fullmatch(word):
        return f"{TK_UP} {word}"
    if _SENTENCE_CASE.fullmatch(word):
        return f"{TK_MAJ} {word}"
    return word


class _TokenStrings(dict):
    """Token id (spaCy ORTH hash) -> token string, with fastai's space marker; filled on demand.
    A dict lookup per token, instead of a StringStore lookup each time."""

    LIMIT = 2_000_000

    def __init__(self, strings):
        super().__init__()
        self.strings = strings

    def __missing__(self, orth: int) -> str:
        if len(self) >= self.LIMIT:
            self.clear()
        token = self.strings[orth]
        token = token if " " not in token else replace_space(token)
        self[orth] = token
        return token


def _doc_tokens(doc) -> list[str]:
    """Token strings of a Doc from :func:`_spacy_tokenizer`, read from its ORTH array through the
    token-string cache (no Token objects)."""
    from spacy.attrs import ORTH
    return list(map(_TOKEN_STRINGS.__getitem__, doc.to_array(ORTH).tolist()))


def tokenize_texts(texts: Iterable[str], batch_size: int = 1000) -> list[list[str]]:
    """Tokenize raw strings into token lists starting with ``xxbos``."""
    tokenizer = _spacy_tokenizer().tokenizer
    texts = [str(text) for text in texts]
    tokens = []
    for start in range(0, len(texts), batch_size):
        prepared = _apply_rules_batch(texts[start:start + batch_size])
        tokens.extend(_doc_tokens(doc) for doc in tokenizer.pipe(prepared, batch_size=batch_size))
    return tokens


def tokenize_batch(batch: dict, text_column: str = "text") -> dict:
    """``datasets.map(batched=True)`` function: adds a ``tokens`` column."""
    return {"tokens": tokenize_texts(batch[text_column])}


FASTAI_PADDING = "xxfake"


def _without_fastai_padding(itos: list[str]) -> list[str]:
    """``itos`` without the run of 1 to 8 ``'xxfake'`` at its end that fastai v2's ``make_vocab``
    appends (a longer run is not fastai's padding and stays, to be refused as duplicates)."""
    end = len(itos)
    while end and itos[end - 1] == FASTAI_PADDING:
        end -= 1
    return itos[:end] if len(itos) - end <= 8 else itos


@dataclass
class Vocab:
    """Token list (``itos``) with special tokens first; unknown tokens map to ``xxunk`` (id 0).

    Tokens are unique, except for the 1 to 8 ``'xxfake'`` entries that fastai v2's ``make_vocab``
    appends to reach a multiple of 8: like fastai's ``o2i``, ``stoi`` leaves that padding out."""

    itos: list[str]

    def __post_init__(self):
        body = _without_fastai_padding(self.itos)
        if len(set(body)) != len(body):
            repeated = sorted(t for t, n in Counter(body).items() if n > 1)
            raise ValueError(f"vocabulary has duplicate tokens: {repeated[:5]}")
        self.stoi = {token: index for index, token in enumerate(body)}
        self.unk_id = self.stoi.get(UNK, 0)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def pad_id(self) -> int:
        return self.stoi[PAD]

    def numericalize(self, tokens: list[str]) -> list[int]:
        stoi, unk = self.stoi, self.unk_id
        return [stoi.get(token, unk) for token in tokens]

    def textify(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    @classmethod
    def build(cls, counts: Counter, max_size: int = 60000, min_freq: int = 2) -> "Vocab":
        """Special tokens first, then tokens by decreasing frequency (ties alphabetical).

        The size is padded to a multiple of 8 with ``xxfake`` tokens, as fastai does, for
        faster matrix multiplies.
        """
        itos = list(SPECIAL_TOKENS)
        seen = set(itos)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        for token, count in ranked:
            if len(itos) >= max_size:
                break
            if count >= min_freq and token not in seen:
                itos.append(token)
                seen.add(token)
        fake = 0
        while len(itos) % 8:
            # Unique names even if the corpus itself holds a token like ``xxfake13``.
            name = f"xxfake{len(itos) + fake}"
            if name in seen:
                fake += 1
                continue
            itos.append(name)
            seen.add(name)
        return cls(itos)


__all__ = ["BOS", "EOS", "FLD", "PAD", "UNK", "SPECIAL_TOKENS", "Vocab", "apply_rules",
           "tokenize_texts", "tokenize_batch"]
