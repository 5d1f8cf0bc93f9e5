#!/usr/bin/env python3
"""pgolf's prepare against the challenge's exporter, on a corpus with awkward documents.

    python scripts/parity/exporter_parity.py [--mirror PATH]

The exporter is `data/download_hf_docs_and_tokenize.py` of openai/parameter-golf,
read from the bare git mirror (`git show HEAD:...`) and imported; only its own
functions run, on CPU, without any download: `build_sentencepiece_tokenizer`
trains the tokenizer as the exporter does (document 0 onwards, each cleaned,
empty ones skipped) and `export_shards` splits and encodes the raw documents.
pgolf's `prepare` (source `files`, `data.tokenizer.train_from: all`) runs on
the same .jsonl.  The script prints the exporter's split statistics (the
figures `tests/data/test_exporter_rules.py` pins) and checks that the
tokenizers hold the same pieces and scores and that every shard is
byte-identical; it exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import sentencepiece as spm  # noqa: E402

from pipeline.config import DataConfig, FilesSourceConfig, load_params  # noqa: E402
from pipeline.data.prepare import prepare  # noqa: E402

DEFAULT_MIRROR = Path("/work/.mirror/openai+parameter-golf/repo")
EXPORTER = "data/download_hf_docs_and_tokenize.py"
VOCAB = 384
VAL_DOCS = 12
SHARD_TOKENS = 4096

# Documents the exporter keeps as they are but SPEC's cleaning would drop or change,
# at fixed places: in the validation split, on its edge and in the training split.
AWKWARD = {
    0: "",                      # empty: a lone BOS
    3: "   \n\t ",              # whitespace only: the normaliser leaves nothing, a lone BOS
    5: "a\x00b",                # NUL: the byte token <0x00>, not a space
    11: "\x00",                 # the last validation document, NUL only
    12: "",                     # the first training document, empty
    20: "  padded  text\x00 ",  # NUL at the end, surrounding spaces
}


def parity_corpus(paragraphs: int = 400) -> list[str]:
    """Pydoc topic paragraphs (real English, shipped with Python) with `AWKWARD` spliced in."""
    from pydoc_data.topics import topics

    text = [p.strip() for name in sorted(topics) for p in topics[name].split("\n\n") if p.strip()]
    docs = text[:paragraphs]
    for index in sorted(AWKWARD):
        docs.insert(index, AWKWARD[index])
    return docs


def write_corpus(path: Path, docs: list[str]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for text in docs:
            f.write(json.dumps({"text": text}) + "\n")
    return path


def pgolf_config(corpus: Path, out_dir: Path) -> DataConfig:
    base = load_params(ROOT / "params.yaml").data
    tokenizer = dataclasses.replace(base.tokenizer, vocab_size=VOCAB, train_from="all", train_docs=0,
                                    model_path="")
    sources = dataclasses.replace(base.sources, files=FilesSourceConfig((str(corpus),)))
    return dataclasses.replace(base, source="files", sources=sources, out_dir=str(out_dir),
                               val_docs=VAL_DOCS, max_docs=0, shard_tokens=SHARD_TOKENS, tokenizer=tokenizer)


def load_exporter(mirror: Path, workdir: Path):
    source = subprocess.run(["git", "-C", str(mirror), "show", f"HEAD:{EXPORTER}"],
                            check=True, capture_output=True, text=True).stdout
    target = workdir / "exporter.py"
    target.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("exporter", target)
    module = importlib.util.module_from_spec(spec)
    sys.modules["exporter"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_exporter(module, corpus: Path, out: Path) -> tuple[dict, Path, Path]:
    """The exporter's tokenizer and shards for `corpus`: (stats, model path, shard directory)."""
    tok = module.build_sentencepiece_tokenizer(spec={"vocab_size": VOCAB}, docs_jsonl=corpus,
                                               tokenizers_dir=out / "tokenizers")
    shards = out / "datasets"
    stats = module.export_shards(corpus, tok, shards, num_val_docs=VAL_DOCS, shard_size=SHARD_TOKENS,
                                 docs_total=module.count_docs(corpus))
    return stats, Path(tok["manifest"]["model_path"]), shards


def pieces(model: Path) -> list[tuple[str, float]]:
    sp = spm.SentencePieceProcessor(model_file=str(model))
    return [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.vocab_size())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="bare git mirror of openai/parameter-golf")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = write_corpus(tmp / "docs_selected.jsonl", parity_corpus())
        stats, model, shard_dir = run_exporter(load_exporter(args.mirror, tmp), corpus, tmp / "exporter")
        print("exporter:", json.dumps({k: stats[k] for k in sorted(stats)}))
        summary = prepare(pgolf_config(corpus, tmp / "pgolf"))
        ours = {name: summary.split(name) for name in ("val", "train")}
        print("pgolf:   ", json.dumps({f"{k}_{n}": ours[n][k] for n in ours for k in ("documents", "tokens")}))
        problems = []
        if pieces(model) != pieces(tmp / "pgolf" / "tokenizer.model"):
            problems.append("tokenizer pieces or scores differ")
        theirs = sorted(p.name for p in shard_dir.glob("fineweb_*.bin"))
        mine = sorted(p.name for p in (tmp / "pgolf" / "shards").glob("fineweb_*.bin"))
        if theirs != mine:
            problems.append(f"shard files differ: {theirs} vs {mine}")
        for name in sorted(set(theirs) & set(mine)):
            if (shard_dir / name).read_bytes() != (tmp / "pgolf" / "shards" / name).read_bytes():
                problems.append(f"{name}: bytes differ")
        print("identical tokenizer and shards" if not problems else "\n".join(problems))
        raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
