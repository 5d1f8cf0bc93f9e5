"""The prepare stage: a corpus source -> tokenizer, token shards and a manifest.

Everything is built in a temporary directory next to ``data.out_dir`` and
swapped in at the end (`pipeline.atomic.atomic_dir`): a failure at any point
leaves no half-written output and the previous output untouched.

Text sources (embedded, files, fineweb docs) follow the challenge's exporter
(``data/download_hf_docs_and_tokenize.py``): every document the source yields
counts, raw, as it is (an empty one becomes a lone BOS, a NUL is encoded as
its byte token); after the ``max_docs`` cap the first ``val_docs`` documents
are validation and the rest training (file order, no shuffling), and each
becomes ``[bos] + ids`` in the shards.  SPEC §1's cleaning (NUL -> space,
strip, drop empty) touches only the tokenizer's training text, which comes
from document 0 (``data.tokenizer.train_from: all``, the exporter's rule) or
from the training split only (``train``); a tokenizer can also be reused.
Ready shards (fineweb shards, a local shards directory) are validated and
linked in as they are.  The same input always gives byte-identical outputs.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
from tqdm import tqdm

from pipeline.atomic import atomic_dir
from pipeline.config import DataConfig, EncodingConfig
from pipeline.data import caseops
from pipeline.data.byte_sidecar import SidecarWriter, document_bytes, encode_with_bytes, lut_counts_spaces
from pipeline.data.encode import EncodedBatch, available_cpus, encode_documents
from pipeline.data.hub import HfHub, Hub, link_or_copy
from pipeline.data.layout import DataLayout
from pipeline.data.manifest import file_sha256, shard_records, split_record
from pipeline.data.shards import ShardWriter
from pipeline.data.source_registry import source_for
from pipeline.data.split_check import CHALLENGE_VAL_DOCS, SplitGuard
from pipeline.data.sources import CorpusHash, ReadyShards, TextSource, clean_documents
from pipeline.data.tokenizer import check_vocab_size, load_tokenizer, train_tokenizer, trainer_settings
from pipeline.data.tokenizer_specs import check_spec, resolve_spec
from pipeline.errors import DataError

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class PrepareSummary:
    """What the stage produced (from the manifest) and how long each phase took."""

    out_dir: Path
    manifest: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    def split(self, name: str) -> dict[str, Any]:
        return self.manifest["splits"][name]

    def describe(self) -> str:
        tok = self.manifest["tokenizer"]
        lines = [f"prepared {self.out_dir}/ from {self.manifest['source']['kind']} source "
                 f"in {self.seconds.get('total', 0.0):.1f} s"]
        for name in ("val", "train"):
            s = self.split(name)
            lines.append(f"  {name:5s} {s['documents']:>12,} documents {s['tokens']:>15,} tokens "
                         f"{len(s['shards']):>5} shard(s)")
        lines.append(f"  tokenizer {tok['origin']}, vocab {tok['vocab_size']}, sha256 {tok['sha256'][:12]}")
        return "\n".join(lines)


def prepare(cfg: DataConfig, *, hub: Hub | None = None, progress: bool = False) -> PrepareSummary:
    """Run the whole stage into ``cfg.out_dir``; raise DataError (leaving no output) on bad input."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if cfg.tokenizer.spec:
        check_spec(resolve_spec(cfg.tokenizer.spec, cfg.tokenizer.specs_file), cfg.tokenizer.vocab_size,
                   cfg.tokenizer.train_docs)
    hub = hub or HfHub()
    with atomic_dir(cfg.out_dir, kind="data") as tmp:
        _give_default_permissions(tmp)
        layout = DataLayout(tmp)
        layout.shards_dir.mkdir()
        opened = source_for(cfg).open(cfg, hub)
        if isinstance(opened, ReadyShards):
            manifest = _link_shards(cfg, layout, opened)
        else:
            manifest = _from_text(cfg, opened, layout, progress, seconds)
        layout.manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    seconds["total"] = time.perf_counter() - start
    return PrepareSummary(out_dir=Path(cfg.out_dir), manifest=manifest, seconds=seconds)


def prepare_inputs(cfg: DataConfig) -> list[tuple[Path, str]]:
    """The local files the stage will read (corpus files, a reused tokenizer), for `preflight`."""
    reads = source_for(cfg).inputs(cfg)
    if cfg.tokenizer.model_path:
        reads.append((Path(cfg.tokenizer.model_path), "data.tokenizer.model_path"))
    return reads


def _give_default_permissions(directory: Path) -> None:
    """A temporary directory is private (0700); the data directory should not be.

    Files inside are written plainly (the whole directory is what is atomic),
    so they get the usual umask permissions too.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)


# --------------------------------------------------------------------------- text sources


def _documents(source: TextSource, cfg: DataConfig) -> Iterator[str]:
    """The raw documents the stage splits and encodes: every one, up to the ``max_docs`` cap."""
    docs = source.documents()
    return itertools.islice(docs, cfg.max_docs) if cfg.max_docs else docs


def tokenizer_training_text(docs: Iterable[str], cfg: DataConfig) -> Iterator[str]:
    """The tokenizer's training text: which raw documents (`train_from`, `train_docs`), then cleaned.

    ``all`` takes documents from 0 as the exporter does (its ``--tokenizer-train-docs``
    counts raw documents, empty ones included); ``train`` starts after the validation split.
    """
    tcfg = cfg.tokenizer
    start = 0 if tcfg.train_from == "all" else cfg.val_docs
    stop = start + tcfg.train_docs if tcfg.train_docs else None
    return clean_documents(itertools.islice(docs, start, stop))


def _from_text(
    cfg: DataConfig, source: TextSource, layout: DataLayout, progress: bool, seconds: dict[str, float]
) -> dict[str, Any]:
    t0 = time.perf_counter()
    processor, tokenizer_info = _tokenizer_for(cfg, source, layout)
    seconds["tokenizer"] = time.perf_counter() - t0
    if not cfg.encoding.byte_sidecar and not lut_counts_spaces(processor):
        raise DataError(f"tokenizer {tokenizer_info.get('model_path') or 'trained here'} has no standalone '▁' "
                        "piece: the byte tables would count some spaces as 3 bytes; "
                        "set data.encoding.byte_sidecar: true")

    t0 = time.perf_counter()
    corpus = CorpusHash()
    docs = corpus.watch(_documents(source, cfg))
    guard = None
    if cfg.encoding.check_split:
        guard = SplitGuard(cfg.val_docs, CHALLENGE_VAL_DOCS if cfg.source == "fineweb" else None)
    extras: dict[str, Any] = {}
    bar = tqdm(desc="encode", unit=" docs", disable=not progress, dynamic_ncols=True, mininterval=0.5)
    with bar:
        val_paths, val_docs = _encode_split(itertools.islice(docs, cfg.val_docs), processor, layout, "val", cfg, bar,
                                            guard, extras)
        train_paths, train_docs = _encode_split(docs, processor, layout, "train", cfg, bar, guard, extras)
    seconds["encode"] = time.perf_counter() - t0
    _check_split_sizes(cfg, source, val_docs + train_docs, train_docs)

    t0 = time.perf_counter()
    manifest = _manifest(cfg, layout, source.describe(), tokenizer_info, processor, val_paths, train_paths)
    manifest["corpus"] = {"documents": corpus.documents, "bytes": corpus.bytes, "sha256": corpus.hexdigest()}
    manifest["split_rule"] = {"val_docs": cfg.val_docs, "max_docs": cfg.max_docs, "shard_tokens": cfg.shard_tokens}
    if cfg.encoding != EncodingConfig():  # the record's data keeps its manifest unchanged
        manifest["encoding"] = {"transform": cfg.encoding.transform, **extras}
        if guard is not None:
            manifest["split_check"] = guard.summary()
    for name, count in (("val", val_docs), ("train", train_docs)):
        if manifest["splits"][name]["documents"] != count:  # a BOS inside a document would break the count
            raise DataError(f"{name} shards hold {manifest['splits'][name]['documents']} BOS tokens "
                            f"for {count} documents")
    seconds["manifest"] = time.perf_counter() - t0
    return manifest


def _tokenizer_for(
    cfg: DataConfig, source: TextSource, layout: DataLayout
) -> tuple[spm.SentencePieceProcessor, dict[str, Any]]:
    """Train the tokenizer on the training documents, or reuse ``data.tokenizer.model_path``."""
    tcfg = cfg.tokenizer
    if tcfg.model_path:
        processor = load_tokenizer(tcfg.model_path, tcfg.vocab_size, "data.tokenizer.vocab_size")
        shutil.copyfile(tcfg.model_path, layout.tokenizer)
        return processor, {"origin": "reused", "model_path": tcfg.model_path}

    seen = _Counted(_documents(source, cfg))
    training = _Counted(tokenizer_training_text(seen, cfg))
    symbols: tuple[str, ...] = ()
    if cfg.encoding.transform == "caseops":  # trained on the transformed text, operators as pieces
        training = _Counted(map(caseops.encode, training))
        symbols = caseops.OPERATORS
    first = next(training, None)
    if first is None:
        if tcfg.train_from == "train" or seen.count == 0:
            _check_split_sizes(cfg, source, seen.count, max(seen.count - cfg.val_docs, 0))
        raise DataError(f"the {source.describe()['kind']} corpus has no document with text "
                        f"to train the tokenizer on in {_where(source)}")
    model = train_tokenizer(itertools.chain([first], training), tcfg, symbols)
    if tcfg.train_from == "all" and not tcfg.train_docs:  # the whole corpus went past: its size is known
        _check_split_sizes(cfg, source, seen.count, max(seen.count - cfg.val_docs, 0))
    layout.tokenizer.write_bytes(model)
    processor = spm.SentencePieceProcessor(model_proto=model)
    check_vocab_size(processor, f"trained on {training.count} documents", tcfg.vocab_size,
                     "data.tokenizer.vocab_size")
    info = {"origin": "trained", "train_docs": training.count, "train_from": tcfg.train_from,
            "settings": trainer_settings(tcfg, symbols)}
    return processor, info


def _encode_split(
    texts: Iterable[str], processor: spm.SentencePieceProcessor, layout: DataLayout, split: str,
    cfg: DataConfig, bar: tqdm, guard: SplitGuard | None, extras: dict[str, Any],
) -> tuple[list[Path], int]:
    """Encode one split into shards; the validation split also gets its byte sidecar if asked."""
    if guard is not None:
        texts = _watched(texts, guard, split)
    sidecar = split == "val" and cfg.encoding.byte_sidecar
    if sidecar:
        batches = _encode_with_sidecar(texts, processor, cfg, SidecarWriter(layout.shards_dir, cfg.shard_tokens),
                                       extras)
    else:
        if cfg.encoding.transform == "caseops":
            texts = map(caseops.encode, texts)
        batches = encode_documents(texts, processor)
    documents = 0
    with ShardWriter(layout.shards_dir, split, cfg.shard_tokens) as writer:
        for batch in batches:
            writer.write(batch.tokens)
            documents += batch.documents
            bar.update(batch.documents)
            bar.set_postfix_str(f"{writer.tokens_written:,} {split} tokens", refresh=False)
        return writer.close(), documents


def _check_split_sizes(cfg: DataConfig, source: TextSource, total: int, train: int) -> None:
    kind = source.describe()["kind"]
    if total == 0:
        raise DataError(f"the {kind} corpus is empty: no documents in {_where(source)}")
    if train == 0:
        capped = f" (data.max_docs={cfg.max_docs})" if cfg.max_docs else ""
        raise DataError(f"the {kind} corpus has {total} documents{capped} but data.val_docs={cfg.val_docs} "
                        f"needs at least {cfg.val_docs + 1} (one more for training)")


def _where(source: TextSource) -> str:
    description = source.describe()
    if description.get("files"):
        return ", ".join(description["files"])
    return str(description.get("docs", description["kind"]))


class _Counted(Iterator[str]):
    def __init__(self, items: Iterable[str]) -> None:
        self._items = iter(items)
        self.count = 0

    def __next__(self) -> str:
        item = next(self._items)
        self.count += 1
        return item


# --------------------------------------------------------------------------- ready shards


def _link_shards(cfg: DataConfig, layout: DataLayout, shards: ReadyShards) -> dict[str, Any]:
    processor = load_tokenizer(shards.tokenizer, cfg.tokenizer.vocab_size, "data.tokenizer.vocab_size",
                               label=shards.tokenizer_label)
    link_or_copy(shards.tokenizer, layout.tokenizer)
    val_paths, train_paths = [], []
    for sources, targets in ((shards.val, val_paths), (shards.train, train_paths)):
        for path in sources:
            target = layout.shards_dir / path.name
            link_or_copy(path, target)
            targets.append(target)
    info = {"origin": "published" if shards.description["kind"] == "fineweb" else "reused"}
    return _manifest(cfg, layout, shards.description, info, processor, val_paths, train_paths)


# --------------------------------------------------------------------------- manifest


def _manifest(
    cfg: DataConfig, layout: DataLayout, source: dict[str, Any], tokenizer_info: dict[str, Any],
    processor: spm.SentencePieceProcessor, val_paths: list[Path], train_paths: list[Path],
) -> dict[str, Any]:
    bos, vocab = int(processor.bos_id()), int(processor.vocab_size())
    threads = available_cpus()
    splits = {
        name: split_record(shard_records(paths, layout.root, bos, vocab, threads))
        for name, paths in (("val", val_paths), ("train", train_paths))
    }
    return {
        "format": MANIFEST_FORMAT,
        "source": source,
        "tokenizer": {
            "file": layout.tokenizer.relative_to(layout.root).as_posix(),
            "sha256": file_sha256(layout.tokenizer),
            "vocab_size": vocab,
            "bos_id": bos,
            **tokenizer_info,
        },
        "sentencepiece_version": spm.__version__,
        "splits": splits,
    }


def _watched(texts: Iterable[str], guard: SplitGuard, split: str) -> Iterator[str]:
    for text in texts:
        guard.see(text, split)
        yield text


def _encode_with_sidecar(
    texts: Iterable[str], processor: spm.SentencePieceProcessor, cfg: DataConfig, sidecar: SidecarWriter,
    extras: dict[str, Any],
) -> Iterator[EncodedBatch]:
    """One document at a time: its ids and each token's original bytes, from the same pieces.

    A document whose counts (plus the whitespace SentencePiece strips, when
    ``sidecar_whitespace`` is ``record``) do not add up to its UTF-8 length
    stops the stage: the sidecar is the proof that bpb divides by the original bytes.
    """
    bos = int(processor.bos_id())
    total = skipped = 0
    for index, text in enumerate(texts):
        ids, counts, uncounted = encode_with_bytes(processor, text, cfg.encoding.transform,
                                                   cfg.encoding.sidecar_whitespace)
        expected = document_bytes(text)
        if sum(counts) + uncounted != expected:
            raise DataError(f"validation document {index}: its tokens stand for {sum(counts)} bytes "
                            f"(+{uncounted} stripped whitespace) but its UTF-8 text has {expected}")
        sidecar.write(counts)
        total += sum(counts)
        skipped += uncounted
        yield EncodedBatch(documents=1, tokens=np.asarray([bos] + ids, dtype=np.int64))
    paths = sidecar.close()
    extras["byte_sidecar"] = {"files": [{"file": p.name, "sha256": file_sha256(p)} for p in paths],
                              "bytes": total, "uncounted_whitespace_bytes": skipped}
