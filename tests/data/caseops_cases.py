"""Shared inputs of the CaseOps tests and scripts/parity/caseops_parity.py (which pins their figures)."""

from __future__ import annotations

import dataclasses

from pipeline.data import caseops
from pipeline.data.tokenizer import train_tokenizer
from tests.data.helpers import data_config, pydoc_paragraphs

CASEOPS_VOCAB = 512

# Every branch of the transform: lower, Title, ALLCAPS, one capital, mixed (camel,
# inner capitals, capital runs), letters against digits and punctuation,
# non-ASCII letters (untouched), the operators themselves in the text.
TRICKY: tuple[str, ...] = (
    "",
    "the quick brown fox",
    "The Quick Brown Fox",
    "THE NASA LAUNCH, OK?",
    "A I a i X",
    "iPhone McDonald's eBay HTTPServer XMLHttpRequest",
    "ABC123def GPT4o COVID-19 mp3 MP3 3D 4K",
    "camelCaseWord PascalCaseWord snake_Case_WORD",
    "Ünïcödé ÉCOLE École naïve CAFÉ café Straße STRASSE",
    "日本語 Text 中文ABC Ελληνικά GREEK ΑΒΓ",
    "emoji 😀 OK 👍🏽 Done",
    "tabs\tAND\nNewLines\r\nX",
    "literal operators \ue001 \ue002Word \ue003 \ue004 \ue004\ue004 E\ue001X",
    "  Leading and trailing WHITESPACE  ",
    "x" * 3 + "Y" * 3 + "z" * 3,
    "aB" * 20,
    "'QUOTED' \"Title\" (Paren) [BRACK] {Brace}",
    "end with capital Z",
    "Z",
)


def train_caseops_tokenizer() -> bytes:
    """A small CaseOps tokenizer (vocab 512, operators as pieces), trained deterministically."""
    cfg = dataclasses.replace(data_config().tokenizer, vocab_size=CASEOPS_VOCAB)
    texts = [caseops.encode(p) for p in pydoc_paragraphs(1500)]
    return train_tokenizer(texts, cfg, caseops.OPERATORS)


def parity_documents() -> list[str]:
    """The tricky cases and 200 pydoc paragraphs: the documents both sidecars are computed on."""
    return list(TRICKY) + pydoc_paragraphs(200)
