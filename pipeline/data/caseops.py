"""CaseOps: a reversible case-folding text transform, and the original bytes of each token.

The frontier records (2026-04-18 onwards) train on text whose ASCII capitals
are replaced by lowercase letters behind operator characters, so one
lowercase subword serves "the", "The" and "THE".  The transform is the
challenge's ``lossless_caps_caseops_v1`` (its ``lossless_caps.py``), applied to
each maximal run of ASCII letters (a *word*):

- all lowercase: unchanged;
- two or more letters, all capitals: ``ALLCAPS`` + the word in lowercase;
- a capital then lowercase only (one capital letter included): ``TITLE`` + lowercase;
- any other mix: ``TITLE`` first if the first letter is a capital, then each
  later capital as ``CAPNEXT`` + its lowercase letter;
- an operator character that occurs in the text itself is written ``ESC`` + it.

Everything else (digits, punctuation, non-ASCII letters) passes through.

Because the tokens of transformed text no longer decode to the original
bytes, bits per byte needs each token's share of the *original* UTF-8 bytes:
`original_byte_counts` walks the tokens' surface strings and charges an
operator nothing, an escaped character its own bytes, a letter one byte.
"""

from __future__ import annotations

from collections.abc import Iterable

TRANSFORM_NAME = "lossless_caps_caseops_v1"
TITLE = "\ue001"
ALLCAPS = "\ue002"
CAPNEXT = "\ue003"
ESC = "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)
_OPERATOR_SET = frozenset(OPERATORS)


class CaseOpsError(ValueError):
    """Text that no CaseOps encoding could have produced (a stray or dangling operator)."""


def _is_letter(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_capital(ch: str) -> bool:
    return "A" <= ch <= "Z"


def _encode_word(word: str, out: list[str]) -> None:
    lower = word.lower()
    if word == lower:
        out.append(word)
    elif len(word) > 1 and word == word.upper():
        out += (ALLCAPS, lower)
    else:
        if _is_capital(word[0]):
            out.append(TITLE)
        out.append(lower[0])
        for ch in word[1:]:
            if _is_capital(ch):
                out.append(CAPNEXT)
            out.append(ch.lower())


def encode(text: str) -> str:
    """The CaseOps form of `text` (bijective: `decode` gives `text` back)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _OPERATOR_SET:
            out += (ESC, ch)
            i += 1
        elif _is_letter(ch):
            j = i + 1
            while j < n and _is_letter(text[j]):
                j += 1
            _encode_word(text[i:j], out)
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _Reader:
    """The decoder's state between characters; `feed` returns what a character stands for.

    Shared by `decode` (which keeps the characters) and `original_byte_counts`
    (which only counts them), so both accept and reject exactly the same texts.
    """

    def __init__(self) -> None:
        self.escaped = False  # the previous character was ESC
        self.word_mode = ""  # "title" or "allcaps" waiting for the first letter of a word
        self.capnext = False  # CAPNEXT waiting for a letter
        self.in_word = False  # the previous output character was an ASCII letter
        self.allcaps = False  # inside a word opened by ALLCAPS

    def feed(self, ch: str) -> str:
        if self.escaped:
            if self.word_mode:
                raise CaseOpsError(f"{self._mode_name()} followed by an escaped character, not a letter")
            self.escaped = False
            self._after_output(ch)
            return ch
        if ch == ESC:
            self.escaped = True
            return ""
        if ch in (TITLE, ALLCAPS):
            if self.word_mode or self.in_word or self.capnext:
                raise CaseOpsError("a TITLE/ALLCAPS operator inside a word or after another operator")
            self.word_mode = "title" if ch == TITLE else "allcaps"
            return ""
        if ch == CAPNEXT:
            if self.capnext:
                raise CaseOpsError("two CAPNEXT operators in a row")
            self.capnext = True
            return ""
        if _is_letter(ch):
            if not self.in_word:
                upper = bool(self.word_mode) or self.capnext
                self.allcaps = self.word_mode == "allcaps"
                self.word_mode, self.capnext, self.in_word = "", False, True
            else:
                if self.word_mode:
                    raise CaseOpsError(f"{self._mode_name()} inside a word")
                upper = self.allcaps or self.capnext
                self.capnext = False
            return ch.upper() if upper else ch
        if self.word_mode or self.capnext:
            raise CaseOpsError(f"{self._mode_name()} not followed by an ASCII letter")
        self._after_output(ch)
        return ch

    def finish(self) -> None:
        if self.escaped:
            raise CaseOpsError("the text ends with an ESC operator")
        if self.word_mode or self.capnext:
            raise CaseOpsError(f"the text ends with a {self._mode_name()} operator")

    def _after_output(self, ch: str) -> None:
        self.in_word = _is_letter(ch)
        if not self.in_word:
            self.allcaps = False

    def _mode_name(self) -> str:
        return {"title": "TITLE", "allcaps": "ALLCAPS"}.get(self.word_mode, "CAPNEXT")


def decode(text: str) -> str:
    """The original text of a CaseOps-encoded `text`; CaseOpsError if it is malformed."""
    reader = _Reader()
    out = [reader.feed(ch) for ch in text]
    reader.finish()
    return "".join(out)


def original_byte_counts(surfaces: Iterable[str]) -> list[int]:
    """UTF-8 bytes of the original text that each token's surface stands for.

    `surfaces` are the tokens' pieces of the transformed text in order
    (SentencePiece's ``encode_as_immutable_proto(...).pieces[i].surface``);
    an operator may sit in one token and its letter in the next.
    """
    reader = _Reader()
    counts = []
    for surface in surfaces:
        counts.append(sum(len(reader.feed(ch).encode("utf-8")) for ch in surface))
    reader.finish()
    return counts
