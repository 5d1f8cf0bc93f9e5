"""Data sources are a registry: `data.source` names one, `data.sources.<name>` holds its params."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.config import ConfigError, DataSources, params_from_dict
from pipeline.data.source_registry import SOURCES, source_for
from pipeline.data.sources import EmbeddedSource, FilesSource
from pipeline.errors import DataError
from tests.conftest import ROOT
from tests.data.helpers import data_config


def test_every_registered_source_has_a_params_section_and_back():
    assert list(SOURCES) == [f.name for f in dataclasses.fields(DataSources)]


def test_the_named_source_opens(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("one\n\ntwo\n", encoding="utf-8")
    assert isinstance(source_for(data_config(source="embedded")).open(data_config(source="embedded"), None),
                      EmbeddedSource)
    cfg = data_config(source="files", files=[corpus])
    opened = source_for(cfg).open(cfg, None)
    assert isinstance(opened, FilesSource) and list(opened.documents()) == ["one\n", "two\n"]
    assert source_for(cfg).inputs(cfg) == [(corpus, "data.sources.files.paths")]
    assert source_for(data_config(source="embedded")).inputs(data_config()) == []


def test_local_shards_source_names_its_key(tmp_path):
    cfg = data_config(source="shards", shards=tmp_path / "missing")
    with pytest.raises(DataError, match=r"^data.sources.shards.dir: .*missing is not a directory$"):
        source_for(cfg).open(cfg, None)


def test_an_unregistered_name_is_a_data_error():
    with pytest.raises(DataError, match=r"data.source: 'web' is not a registered source \(embedded, files"):
        source_for(data_config(source="web"))


@pytest.fixture
def raw():
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("source, message", [
    ("files", "data.sources.files.paths: source=files needs at least one path (got [])"),
    ("shards", "data.sources.shards.dir: source=shards needs a directory (got '')"),
])
def test_only_the_chosen_source_must_be_complete(raw, source, message):
    params_from_dict(raw)  # the record: files and shards are empty but not chosen
    raw["data"]["source"] = source
    with pytest.raises(ConfigError) as err:
        params_from_dict(raw)
    assert str(err.value) == message


def test_the_fineweb_repo_is_checked_only_when_chosen_or_set(raw):
    raw["data"]["sources"]["fineweb"]["repo"] = ""
    with pytest.raises(ConfigError, match=r"^data.sources.fineweb.repo: not a Hugging Face repo id"):
        params_from_dict(raw)
    raw["data"]["source"] = "embedded"
    assert params_from_dict(raw).data.sources.fineweb.repo == ""
