"""`pipeline.config.validate` calls every dataclass's own `validate(path)`, nested groups first,
so a new group is checked by adding the method and nothing else."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from pipeline.config import ConfigError, doc, validate

calls: list[str] = []


@dataclass(frozen=True)
class Leaf:
    n: int = doc("A count.")

    def validate(self, path: str) -> None:
        calls.append(path)
        if self.n < 0:
            raise ConfigError(f"{path}.n: must be >= 0 (got {self.n})")


@dataclass(frozen=True)
class Middle:
    leaf: Leaf = doc("A nested group.")
    rate: float = doc("A rate; Middle has no checks of its own.")


@dataclass(frozen=True)
class Root:
    middle: Middle = doc("A group without validate, holding one with it.")
    other: Leaf = doc("A second group of the same kind.")

    def validate(self, path: str) -> None:
        calls.append(path or "<root>")


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()


def test_every_group_with_validate_is_called_with_its_path_children_first():
    validate(Root(Middle(Leaf(1), 0.5), Leaf(2)))
    assert calls == ["middle.leaf", "other", "<root>"]


def test_a_nested_groups_check_fails_with_its_key_path():
    with pytest.raises(ConfigError, match=r"^middle\.leaf\.n: must be >= 0 \(got -3\)$"):
        validate(Root(Middle(Leaf(-3), 0.5), Leaf(2)))
    assert "<root>" not in calls


def test_non_finite_numbers_are_refused_before_any_group_check():
    with pytest.raises(ConfigError, match=r"^middle\.rate: must be a finite number \(got nan\)$"):
        validate(Root(Middle(Leaf(1), math.nan), Leaf(2)))
    assert calls == []
