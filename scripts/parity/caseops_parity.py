#!/usr/bin/env python3
"""pgolf's CaseOps transform and byte sidecar against the 1.0611 record's own scripts.

    python scripts/parity/caseops_parity.py [--mirror PATH]

Reads ``lossless_caps.py`` and ``prepare_caseops_data.py`` of
records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611
from the bare git mirror and imports them.  Checks, exiting 1 on a difference:

1. `pipeline.data.caseops.encode`/`decode` against the record's
   ``encode_lossless_caps_v2``/``decode_lossless_caps_v2`` on `TRICKY`
   (all-caps, mixed case, digits, Unicode, literal operators), byte for byte;
2. the record's ``prepare_caseops_data.main`` run on a .jsonl of the same
   documents and pydoc paragraphs, with a CaseOps tokenizer pgolf trains
   (deterministic): its validation tokens and byte sidecar against
   `pipeline.data.byte_sidecar.encode_with_bytes` (``whitespace="record"``).

One stub: sentencepiece 0.2.3 dropped ``encode_as_immutable_proto``, which the
record calls; the script gives the processor that name for
``encode(..., return_type="proto")``, whose pieces carry the same ``surface``.
It prints the sha256 digests that ``tests/data/test_caseops.py`` pins.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import sentencepiece as spm  # noqa: E402

from pipeline.data import caseops  # noqa: E402
from pipeline.data.byte_sidecar import encode_with_bytes  # noqa: E402
from tests.data.caseops_cases import TRICKY, parity_documents, train_caseops_tokenizer  # noqa: E402

DEFAULT_MIRROR = Path("/work/.mirror/openai+parameter-golf/repo")
RECORD = "records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"


def _import_record(mirror: Path, workdir: Path) -> tuple[object, object]:
    for name in ("lossless_caps.py", "prepare_caseops_data.py"):
        text = subprocess.run(["git", "-C", str(mirror), "show", f"HEAD:{RECORD}/{name}"], check=True,
                              capture_output=True, text=True).stdout
        (workdir / name).write_text(text, encoding="utf-8")
    sys.path.insert(0, str(workdir))
    modules = []
    for name in ("lossless_caps", "prepare_caseops_data"):
        spec = importlib.util.spec_from_file_location(name, workdir / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules.append(module)
    return modules[0], modules[1]


def digest(values) -> str:
    return hashlib.sha256(np.asarray(values, dtype="<u2").tobytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR)
    args = ap.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        caps, prep = _import_record(args.mirror, work)

        encoded = []
        for text in TRICKY:
            ours, theirs = caseops.encode(text), caps.encode_lossless_caps_v2(text)
            encoded.append(ours)
            if ours != theirs:
                print(f"encode differs on {text!r}: {ours!r} vs {theirs!r}")
                failures += 1
            if caseops.decode(ours) != caps.decode_lossless_caps_v2(theirs) or caseops.decode(ours) != text:
                print(f"decode differs on {text!r}")
                failures += 1
        print("tricky cases:", len(TRICKY))
        print("encoded sha256:", hashlib.sha256(json.dumps(encoded).encode("utf-8")).hexdigest())

        model = work / "caseops.model"
        model.write_bytes(train_caseops_tokenizer())
        docs = parity_documents()
        jsonl = work / "docs.jsonl"
        jsonl.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
        out = work / "out"
        original_ctor = spm.SentencePieceProcessor.__init__

        def ctor(self, *a, **kw):  # the stub: the record's proto call on sentencepiece 0.2.3
            original_ctor(self, *a, **kw)
            self.encode_as_immutable_proto = lambda text: self.encode(text, return_type="proto")

        spm.SentencePieceProcessor.__init__ = ctor
        sys.argv = ["prepare_caseops_data.py", "--docs", str(jsonl), "--out", str(out), "--sp", str(model),
                    "--val-docs", str(len(docs))]
        prep.main()
        spm.SentencePieceProcessor.__init__ = original_ctor
        folder = out / "datasets" / "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"
        rec_tokens = np.fromfile(folder / "fineweb_val_000000.bin", dtype="<u2", offset=1024)
        rec_bytes = np.fromfile(folder / "fineweb_val_bytes_000000.bin", dtype="<u2", offset=1024)

        sp = spm.SentencePieceProcessor(model_file=str(model))
        tokens, counts = [], []
        for text in docs:
            ids, doc_counts, _ = encode_with_bytes(sp, text, "caseops", "record")
            tokens += [sp.bos_id()] + ids
            counts += doc_counts
        for what, ours, theirs in (("tokens", tokens, rec_tokens), ("sidecar", counts, rec_bytes)):
            same = len(ours) == len(theirs) and bool(np.array_equal(np.asarray(ours), theirs.astype(np.int64)))
            print(f"{what}: {len(ours)} values, sha256 {digest(ours)} {'==' if same else '!='} record "
                  f"{digest(theirs)}")
            failures += not same
        print("documents:", len(docs), "sidecar bytes:", int(rec_bytes.sum()))
    print("PARITY OK" if not failures else f"{failures} DIFFERENCES")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
