"""params.yaml mistakes the types let through, each refused by the CLI in one line naming the key or file."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.config import SEED_MAX
from stages.cli import app
from tests.conftest import ROOT

runner = CliRunner()
RECORD = (ROOT / "params.yaml").read_text(encoding="utf-8")


def run_swa(tmp_path, text: str | bytes, *args: str) -> str:
    """`pgolf swa` with this params file; the one stderr line, after checking nothing was written."""
    path = tmp_path / "params.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, ["swa", "--seed", "1", "--params", str(path), *args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    prefix = f"pgolf: error: {path}: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix):]


def replace_line(old: str, new: str) -> str:
    assert RECORD.count(old) == 1, old
    return RECORD.replace(old, new)


@pytest.mark.parametrize("old, new, expected", [
    ("  tied_embed_init_std: 0.005\n", "  tied_embed_init_std: -1\n",
     "model.tied_embed_init_std: a standard deviation must be >= 0 (got -1.0)"),
    ("  tied_embed_init_std: 0.005\n", "  tied_embed_init_std: .nan\n",
     "model.tied_embed_init_std: must be a finite number (got nan)"),
    ("  matrix_lr: 0.025\n", "  matrix_lr: .inf\n", "train.matrix_lr: must be a finite number (got inf)"),
    ("  logit_softcap: 30.0\n", "  logit_softcap: .inf\n", "model.logit_softcap: must be a finite number (got inf)"),
    ("- 1336\n", f"- {SEED_MAX + 1}\n", f"seeds[2]: must be in [0, {SEED_MAX}] (got {SEED_MAX + 1})"),
    ("      repo: willdepueoai/parameter-golf\n", "      repo: not a repo!\n",
     "data.sources.fineweb.repo: not a Hugging Face repo id ([namespace/]name: letters, digits, '-', '_', '.') "
     "(got 'not a repo!')"),
    ("      repo: willdepueoai/parameter-golf\n", "      repo: a/b/c\n",
     "data.sources.fineweb.repo: not a Hugging Face repo id ([namespace/]name: letters, digits, '-', '_', '.') "
     "(got 'a/b/c')"),
    ("      revision: main\n", "      revision: ../main\n",
     "data.sources.fineweb.revision: not a Hub revision (a commit hash, a tag or a branch name) (got '../main')"),
])
def test_values_that_make_no_sense(tmp_path, old, new, expected):
    assert run_swa(tmp_path, replace_line(old, new)) == expected


def test_duplicate_key(tmp_path):
    text = replace_line("  mlp_mult: 3\n", "  mlp_mult: 3\n  mlp_mult: 4\n")
    line = text.splitlines().index("  mlp_mult: 4") + 1
    assert run_swa(tmp_path, text) == (f"not valid YAML: duplicate key 'mlp_mult' "
                                       f"at line {line}, column 3")


def test_yaml_syntax_error_is_one_line(tmp_path):
    text = replace_line("  mlp_mult: 3\n", "  mlp_mult: [3\n")
    line = text.splitlines().index("  mlp_mult: [3") + 2  # PyYAML notices at the next key's colon
    assert run_swa(tmp_path, text) == ("not valid YAML: expected ',' or ']', but got ':' "
                                       f"(while parsing a flow sequence) at line {line}, column 17")


def test_not_utf8(tmp_path):
    text = replace_line("  mlp_mult: 3\n", "  mlp_mult: 3 # \xe9\n").encode("latin-1")
    line = text.split(b"\n").index(b"  mlp_mult: 3 # \xe9") + 1
    assert run_swa(tmp_path, text) == f"not UTF-8 text (byte 0xe9 on line {line})"


@pytest.mark.parametrize("seed", ["-1", str(SEED_MAX + 1)])
def test_seed_option_out_of_range(tmp_path, seed):
    (tmp_path / "params.yaml").write_text(RECORD)
    result = runner.invoke(app, ["quantize", "--seed", seed, "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"pgolf: error: --seed: must be in [0, {SEED_MAX}] (got {seed})"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
