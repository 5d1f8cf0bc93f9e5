"""Throughput of `pgolf prepare` on the full embedded corpus (the CPU smoke corpus).

Prints documents/s and tokens/s for the encoding phase and for the whole
stage, and the tokenizer phase on its own; then the two SentencePiece parts
measured from memory (training; batch encoding on all cores and on one), which
is what scales to FineWeb, where reading JSON lines is cheap next to parsing
the standard library.  Runs into a temporary directory and never fails on a
slow machine.

    python benchmarks/bench_prepare.py [--val-docs 500] [--jsonl-copies 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import sentencepiece as spm

from pipeline.config import FilesSourceConfig, load_params
from pipeline.data.embedded import iter_embedded_documents
from pipeline.data.encode import available_cpus, encode_documents
from pipeline.data.prepare import prepare
from pipeline.data.sources import clean_documents
from pipeline.data.tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-docs", type=int, default=500)
    parser.add_argument("--jsonl-copies", type=int, default=4, help="corpus repeats in the JSON-lines run")
    args = parser.parse_args()

    t0 = time.perf_counter()
    texts = list(clean_documents(iter_embedded_documents()))
    docs = len(texts)
    read_s = time.perf_counter() - t0

    base = load_params(ROOT / "params.yaml").data
    with tempfile.TemporaryDirectory(prefix="bench_prepare.") as tmp:
        cfg = dataclasses.replace(base, source="embedded", out_dir=str(Path(tmp) / "data"),
                                  val_docs=args.val_docs, max_docs=0)
        summary = prepare(cfg)
        model = Path(tmp) / "data" / "tokenizer.model"
        processor = spm.SentencePieceProcessor(model_file=str(model))

        # The FineWeb-docs path: the same text as JSON lines, tokenizer reused.
        jsonl = Path(tmp) / "corpus.jsonl"
        with open(jsonl, "w", encoding="utf-8") as f:
            for _ in range(args.jsonl_copies):
                f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
        files_cfg = dataclasses.replace(
            cfg, source="files", sources=dataclasses.replace(cfg.sources, files=FilesSourceConfig((str(jsonl),))),
            out_dir=str(Path(tmp) / "files"),
            tokenizer=dataclasses.replace(cfg.tokenizer, model_path=str(model)))
        files_summary = prepare(files_cfg)
        jsonl_mb = jsonl.stat().st_size / 1e6
    s = summary.seconds

    t0 = time.perf_counter()
    train_tokenizer(texts[args.val_docs :], cfg.tokenizer)
    train_s = time.perf_counter() - t0
    encode_s = {}
    for threads in sorted({available_cpus(), 1}, reverse=True):
        t0 = time.perf_counter()
        for _ in encode_documents(texts, processor, num_threads=threads):
            pass
        encode_s[threads] = time.perf_counter() - t0
    tokens = summary.split("val")["tokens"] + summary.split("train")["tokens"]
    documents = summary.split("val")["documents"] + summary.split("train")["documents"]
    assert documents == docs
    corpus_mb = summary.manifest["corpus"]["bytes"] / 1e6

    print(f"machine: {platform.processor() or platform.machine()}, {available_cpus()} usable cores, "
          f"Python {platform.python_version()}")
    print(f"corpus: {documents:,} documents, {corpus_mb:.2f} MB, {tokens:,} tokens (vocab {cfg.tokenizer.vocab_size})")
    print(f"read corpus alone      {read_s:7.2f} s  {documents / read_s:10,.0f} docs/s")
    print(f"tokenizer (read+train) {s['tokenizer']:7.2f} s")
    print(f"encode+write shards    {s['encode']:7.2f} s  {documents / s['encode']:10,.0f} docs/s  "
          f"{tokens / s['encode']:12,.0f} tokens/s")
    print(f"manifest (sha256)      {s['manifest']:7.2f} s")
    print(f"total                  {s['total']:7.2f} s  {documents / s['total']:10,.0f} docs/s  "
          f"{tokens / s['total']:12,.0f} tokens/s")
    fs = files_summary.seconds
    files_tokens = files_summary.split("val")["tokens"] + files_summary.split("train")["tokens"]
    files_docs = files_summary.split("val")["documents"] + files_summary.split("train")["documents"]
    print(f"same text as JSON lines x{args.jsonl_copies} ({jsonl_mb:.1f} MB), tokenizer reused:")
    print(f"encode+write shards    {fs['encode']:7.2f} s  {files_docs / fs['encode']:10,.0f} docs/s  "
          f"{files_tokens / fs['encode']:12,.0f} tokens/s  {jsonl_mb / fs['encode']:6.1f} MB/s")
    print("from memory:")
    print(f"train tokenizer        {train_s:7.2f} s  ({docs - args.val_docs:,} documents)")
    for threads, seconds in encode_s.items():
        print(f"encode, {threads:2d} thread(s)    {seconds:7.2f} s  {documents / seconds:10,.0f} docs/s  "
              f"{tokens / seconds:12,.0f} tokens/s")


if __name__ == "__main__":
    main()
