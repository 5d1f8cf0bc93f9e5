"""The challenge exporter's tokenizer specs: a named vocabulary (sp1024, sp4096, sp8192, ...).

The challenge's ``data/download_hf_docs_and_tokenize.py`` builds one tokenizer
per entry of a specs file (``data/tokenizer_specs.json``: ``{"tokenizers":
[{"name": "sp_bpe_1024", "dataset_suffix": "sp1024", "vocab_size": 1024}]}``);
an entry without a name is called ``sp_bpe_<V>`` and its data ``sp<V>``.  The
records name their data by that suffix (``fineweb10B_sp8192``).  pgolf accepts
the name or the suffix in ``data.tokenizer.spec``, from the built-in entries
below (the exporter's naming rule for the vocabularies the records used) or
from a specs file of the exporter's format (``data.tokenizer.specs_file``).
A spec fixes the vocabulary size (and, if it says so, the number of documents
the tokenizer trains on); `check_spec` insists the params agree, so a run never
silently trains a vocabulary other than the one it is named after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DataError

_BUILTIN_VOCABS = (1024, 2048, 4096, 8192, 16384)


@dataclass(frozen=True)
class TokenizerSpec:
    """One SentencePiece BPE entry of the exporter's specs."""

    name: str
    dataset_suffix: str
    vocab_size: int
    # The exporter's ``tokenizer_train_docs`` (0 = every document).
    train_docs: int = 0


def _exporter_spec(vocab_size: int, name: str = "", suffix: str = "", train_docs: int = 0) -> TokenizerSpec:
    return TokenizerSpec(name or f"sp_bpe_{vocab_size}", suffix or f"sp{vocab_size}", vocab_size, train_docs)


BUILTIN_SPECS: tuple[TokenizerSpec, ...] = tuple(_exporter_spec(v) for v in _BUILTIN_VOCABS)


def load_specs_file(path: str | Path) -> tuple[TokenizerSpec, ...]:
    """The SentencePiece entries of an exporter specs file (``tokenizers`` or ``tokenizer_specs`` list)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"data.tokenizer.specs_file: {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"data.tokenizer.specs_file: {path} is not readable JSON ({exc})") from None
    entries = payload.get("tokenizer_specs", payload.get("tokenizers")) if isinstance(payload, dict) else payload
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: expected a non-empty list under 'tokenizers' (the exporter's format)")
    specs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{path}: tokenizers[{index}] is not a JSON object")
        if "vocab_size" not in entry:  # the pure-byte tokenizer and other kinds pgolf does not build
            continue
        try:
            vocab = int(entry["vocab_size"])
            train_docs = int(entry.get("tokenizer_train_docs") or 0)
        except (TypeError, ValueError):
            raise DataError(f"{path}: tokenizers[{index}] has a non-integer vocab_size or tokenizer_train_docs") from None
        specs.append(_exporter_spec(vocab, str(entry.get("name", "")), str(entry.get("dataset_suffix", "")),
                                    train_docs))
    return tuple(specs)


def resolve_spec(name: str, specs_file: str = "") -> TokenizerSpec:
    """The spec called `name` (its name or dataset suffix) in `specs_file`, or built in."""
    specs = load_specs_file(specs_file) if specs_file else BUILTIN_SPECS
    for spec in specs:
        if name in (spec.name, spec.dataset_suffix):
            return spec
    where = specs_file or "the built-in specs"
    known = ", ".join(spec.dataset_suffix for spec in specs)
    raise DataError(f"data.tokenizer.spec: {name!r} is not in {where} (known: {known})")


def check_spec(spec: TokenizerSpec, vocab_size: int, train_docs: int) -> None:
    """DataError unless the tokenizer params agree with `spec`."""
    if vocab_size != spec.vocab_size:
        raise DataError(f"data.tokenizer.spec {spec.dataset_suffix!r} has vocab_size {spec.vocab_size} "
                        f"but data.tokenizer.vocab_size is {vocab_size}")
    if spec.train_docs and train_docs != spec.train_docs:
        raise DataError(f"data.tokenizer.spec {spec.dataset_suffix!r} trains on {spec.train_docs} documents "
                        f"but data.tokenizer.train_docs is {train_docs}")
