"""Which modules the exported train_gpt.py embeds: the closure of static imports from its program."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ArtifactError
from pipeline.export.closure import DEFAULT_ROOTS, code_files, total_code_bytes

SRC = Path(__file__).resolve().parents[2]


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture()
def fake_tree(tmp_path) -> Path:
    _write(tmp_path, "pipeline/__init__.py", '"""pkg"""\n')
    _write(tmp_path, "pipeline/errors.py", "class E(Exception): ...\n")
    _write(tmp_path, "pipeline/unused.py", "import pipeline.errors\n")
    _write(tmp_path, "pipeline/model/__init__.py", "from pipeline.model.gpt import GPT\n")
    _write(tmp_path, "pipeline/model/gpt.py", "import torch\nfrom ..quant import rowwise\nfrom .blocks import Block\n")
    _write(tmp_path, "pipeline/model/blocks.py", "def f():\n    from pipeline import errors\n")
    _write(tmp_path, "pipeline/model/sub/__init__.py", "")
    _write(tmp_path, "pipeline/model/sub/canon.py", "import numpy as np\n")
    _write(tmp_path, "pipeline/quant/__init__.py", "")
    _write(tmp_path, "pipeline/quant/rowwise.py", "from pipeline.quant import helpers as h\n")
    _write(tmp_path, "pipeline/quant/helpers.py", "X = 1\n")
    _write(tmp_path, "pipeline/quant/other.py", "Y = 2\n")
    return tmp_path


def test_closure_follows_static_imports(fake_tree):
    files = code_files(("pipeline.model",), source_root=fake_tree)
    paths = [f.path for f in files]
    assert paths == sorted([
        "pipeline/__init__.py",
        "pipeline/errors.py",  # imported inside a function: still counted
        "pipeline/model/__init__.py",
        "pipeline/model/blocks.py",
        "pipeline/model/gpt.py",
        "pipeline/model/sub/__init__.py",
        "pipeline/model/sub/canon.py",  # part of the model package, imported or not
        "pipeline/quant/__init__.py",  # parent package of a relative import
        "pipeline/quant/helpers.py",  # `from pkg import module`
        "pipeline/quant/rowwise.py",
    ])
    for f in files:
        assert f.bytes == (fake_tree / f.path).stat().st_size
    assert total_code_bytes(files) == sum((fake_tree / p).stat().st_size for p in paths)


def test_missing_root_raises(fake_tree):
    with pytest.raises(ArtifactError, match="pipeline.nothing"):
        code_files(("pipeline.nothing",), source_root=fake_tree)


def test_real_artifact_reader_closure():
    paths = {f.path for f in code_files(("pipeline.quant.artifact", "pipeline.evaluate"))}
    for rel in ("pipeline/__init__.py", "pipeline/quant/__init__.py", "pipeline/quant/artifact.py",
                "pipeline/quant/mixed.py", "pipeline/quant/rowwise.py", "pipeline/errors.py",
                "pipeline/evaluate/scoring.py", "pipeline/evaluate/bytes.py", "pipeline/evaluate/windows.py",
                "pipeline/runtime.py"):
        assert rel in paths, rel
    assert "pipeline/report.py" not in paths and "pipeline/quant/size.py" not in paths


@pytest.mark.skipif(not (SRC / "pipeline/model/__init__.py").is_file(), reason="pipeline.model not there yet")
def test_default_roots_include_model_sources():
    files = code_files(DEFAULT_ROOTS)
    paths = {f.path for f in files}
    model_sources = {p.relative_to(SRC).as_posix() for p in (SRC / "pipeline/model").rglob("*.py")}
    assert model_sources <= paths
    assert total_code_bytes(files) == sum((SRC / p).stat().st_size for p in paths)


def test_default_root_is_the_training_path_and_nothing_of_the_cli():
    paths = {f.path for f in code_files()}
    for rel in ("pipeline/export/run.py", "pipeline/train/loop.py", "pipeline/optim/muon.py",
                "pipeline/train/averaging.py", "pipeline/quant/packing.py", "pipeline/evaluate/session.py",
                "pipeline/data/loader.py"):
        assert rel in paths, rel
    for rel in ("pipeline/export/script.py", "pipeline/export/closure.py", "pipeline/submission.py",
                "pipeline/report.py", "pipeline/data/prepare.py", "pipeline/data/hub.py", "pipeline/bench.py"):
        assert rel not in paths, rel
    assert not any(p.startswith("stages/") for p in paths)
