"""Every parameter declares a one-line description, and README.md's parameter
table is the one scripts/params-table generates from them."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml

from pipeline.config import Params, field_doc, load_params
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _script():
    return load_script("scripts/params-table")


def _fields(cls, prefix=""):
    """(key, field) of every field of `cls` and of the dataclasses inside it."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        yield key, f
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _fields(hints[f.name], key + ".")


@pytest.fixture(scope="module")
def script():
    return _script()


@pytest.fixture(scope="module")
def table(script) -> str:
    return script.render(load_params(ROOT / "params.yaml"), script.profile_params("smoke"))


def test_every_field_has_a_one_line_description():
    undocumented = [key for key, f in _fields(Params) if not field_doc(f).strip()]
    assert not undocumented, f"fields without doc(...) in pipeline/config.py: {undocumented}"
    multi = [key for key, f in _fields(Params) if "\n" in field_doc(f)]
    assert not multi, f"descriptions must be one line: {multi}"


def test_readme_table_is_current(script, table):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert table in readme, "README.md's parameter table is out of date: run scripts/params-table"


def test_table_has_a_row_per_params_key_with_both_profiles_values(script, table):
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
             for line in table.splitlines() if line.startswith("| `")]
    rows = {key.strip("`"): rest for key, *rest in cells}
    record = dict(_leaf_items(params))
    assert set(rows) == set(record)
    for key, (rec, _smoke, _type, meaning) in rows.items():
        assert yaml.safe_load(rec.strip("`")) == record[key], key
        assert meaning
    # A value the smoke profile changes shows in its column (conf/profile/smoke.yaml: train.iterations: 120).
    assert rows["train.iterations"][:2] == ["`7000`", "`120`"]
    assert rows["data.sources.fineweb.mode"][2] == "one of `shards`, `docs`"
    assert rows["data.sources.embedded"] == ["`{}`", "`{}`", "no params", "Text shipped with Python (no download)."]


def _leaf_items(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaf_items(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def test_check_mode_fails_on_a_stale_table_and_the_script_repairs_it(script, table, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{script.BEGIN}\n| `seeds` | `[1]` | stale |\n{script.END}\n\nafter\n",
                      encoding="utf-8")
    assert script.main(["--check", "--readme", str(readme)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert script.main(["--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == f"intro\n\n{table}\n\nafter\n"
    assert script.main(["--check", "--readme", str(readme)]) == 0
