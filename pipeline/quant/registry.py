"""The one rule every quantisation registry follows (schemes, methods, compressors).

A name maps to one entry; registering the same entry again is harmless, a
different entry under a taken name is refused, and an unknown name is an
error listing what is registered.
"""

from __future__ import annotations

from typing import Protocol, TypeVar


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


def register(table: dict[str, T], kind: str, entry: T, same_entry: bool = False) -> T:
    """Add `entry` under its name; `same_entry` demands the very object, not an equal one."""
    held = table.get(entry.name)
    if held is not None and ((held is not entry) if same_entry else (held != entry)):
        raise ValueError(f"{kind} {entry.name!r} is already registered")
    table[entry.name] = entry
    return entry


def lookup(table: dict[str, T], kind: str, name: str) -> T:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r} (registered: {', '.join(table)})") from None
