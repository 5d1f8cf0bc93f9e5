"""The exporter's tokenizer specs: built in, from a specs file, and checked against the params."""

from __future__ import annotations

import json

import pytest

from pipeline.config import ConfigError, params_from_dict
from pipeline.data.tokenizer_specs import check_spec, load_specs_file, resolve_spec
from pipeline.errors import DataError
from tests.conftest import ROOT

import yaml


@pytest.mark.parametrize(("name", "vocab"), [("sp1024", 1024), ("sp4096", 4096), ("sp8192", 8192),
                                             ("sp_bpe_8192", 8192)])
def test_builtin_specs_follow_the_exporters_naming(name, vocab):
    spec = resolve_spec(name)
    assert spec.vocab_size == vocab
    assert (spec.name, spec.dataset_suffix) == (f"sp_bpe_{vocab}", f"sp{vocab}")


def test_specs_file_in_the_exporters_format(tmp_path):
    # data/tokenizer_specs.json of the challenge, plus an entry with its own names and a pure-byte one
    path = tmp_path / "specs.json"
    path.write_text(json.dumps({"tokenizers": [
        {"name": "sp_bpe_1024", "dataset_suffix": "sp1024", "vocab_size": 1024},
        {"vocab_size": 3000, "tokenizer_train_docs": 500},
        {"name": "pure_byte_260", "dataset_suffix": "byte260", "kind": "byte"},
    ]}))
    assert [s.dataset_suffix for s in load_specs_file(path)] == ["sp1024", "sp3000"]
    spec = resolve_spec("sp3000", str(path))
    assert (spec.name, spec.vocab_size, spec.train_docs) == ("sp_bpe_3000", 3000, 500)
    with pytest.raises(DataError, match=r"'sp8192' is not in .*specs.json \(known: sp1024, sp3000\)"):
        resolve_spec("sp8192", str(path))
    with pytest.raises(DataError, match="trains on 500 documents but data.tokenizer.train_docs is 0"):
        check_spec(spec, 3000, 0)


def test_unknown_spec_and_missing_file_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match=r"'sp999' is not in the built-in specs \(known: sp1024, sp2048"):
        resolve_spec("sp999")
    with pytest.raises(DataError, match="specs_file: .*nope.json not found"):
        resolve_spec("sp1024", str(tmp_path / "nope.json"))


def test_prepare_insists_the_params_agree_with_the_spec(tmp_path):
    from pipeline.data.prepare import prepare
    from tests.data.helpers import data_config

    cfg = data_config(source="embedded", out_dir=str(tmp_path / "out"), tokenizer={"spec": "sp8192"})
    with pytest.raises(DataError, match="spec 'sp8192' has vocab_size 8192 but data.tokenizer.vocab_size is 1024"):
        prepare(cfg)
    assert not (tmp_path / "out").exists()


def test_caseops_needs_the_sidecar():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["encoding"]["transform"] = "caseops"
    with pytest.raises(ConfigError, match="data.encoding.byte_sidecar: must be true with data.encoding.transform=caseops"):
        params_from_dict(raw)
