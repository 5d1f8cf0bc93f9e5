"""Generating train_gpt.py: imports renamed, forbidden dependencies refused, sources embedded exactly."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.export.script import (
    ExportError, embedded_modules, exported_script, requirements, script_source, third_party_imports)

RUN = '''"""program"""
from __future__ import annotations

import zstandard
from pipeline.errors import E
from pipeline import helpers as h

try:
    import flash_attn_interface
except ImportError:
    flash_attn_interface = None


def main(params, path):
    import tqdm  # only when called: allowed
    print("ran", params["seeds"], h.X, E.__module__, r"\\n", path.endswith(".py"))
'''


def _tree(root: Path, run: str = RUN, helpers: str = "X = 'x'\n") -> Path:
    for rel, text in {
        "pipeline/__init__.py": '"""pkg"""\n',
        "pipeline/errors.py": "class E(Exception):\n    pass\n",
        "pipeline/helpers.py": helpers,
        "pipeline/unused.py": "import yaml\n",
        "pipeline/export/__init__.py": "",
        "pipeline/export/run.py": run,
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_closure_is_renamed_into_the_private_package(tmp_path):
    modules = {m.name: m for m in embedded_modules(_tree(tmp_path))}
    assert sorted(modules) == ["_pgolf", "_pgolf.errors", "_pgolf.export", "_pgolf.export.run", "_pgolf.helpers"]
    src = modules["_pgolf.export.run"].source
    assert "from _pgolf.errors import E\nfrom _pgolf import helpers as h\n" in src
    # Only import statements change: everything else is the file as it is.
    assert src.replace("_pgolf", "pipeline") == (tmp_path / "pipeline/export/run.py").read_text()
    assert modules["_pgolf"].is_package and not modules["_pgolf.helpers"].is_package
    assert third_party_imports(list(modules.values())) == ["zstandard"]  # the try-guarded import is optional


def test_generated_script_runs_from_its_embedded_modules(tmp_path, record_params):
    source = script_source(record_params, _tree(tmp_path / "src"))
    ast.parse(source)
    (tmp_path / "train_gpt.py").write_text(source)
    proc = subprocess.run([sys.executable, "train_gpt.py"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": "", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"ran {list(record_params.seeds)} x _pgolf.errors \\n True\n"


@pytest.mark.parametrize("run, message", [
    ("import tqdm\n", "imports tqdm at module level"),
    ("if True:\n    from yaml import safe_load\n", "imports yaml at module level"),
    ("import pipeline.errors\n", "`import pipeline...` cannot be embedded"),
    ("X = '''a'''\n", "cannot be embedded as a raw string"),
])
def test_what_cannot_be_exported_is_refused_naming_the_file(tmp_path, record_params, run, message):
    with pytest.raises(ExportError, match=message) as info:
        script_source(record_params, _tree(tmp_path, run=run))
    assert "pipeline/export/run.py" in str(info.value)


def test_real_script_is_deterministic_and_compresses(record_params):
    plain = exported_script(record_params)
    assert plain == exported_script(record_params)
    assert b"\nimport pipeline" not in plain and b"\nfrom pipeline" not in plain
    packed = exported_script(record_params, compress=True)
    assert packed.startswith(b"import lzma as L,base64 as B\nexec(") and len(packed) < len(plain) // 2
    assert requirements() == [r for r in requirements() if r.startswith("zstandard")] and requirements()
