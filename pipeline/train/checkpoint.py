"""Resumable training state: one atomic file per rank.

Muon keeps each momentum buffer only on the rank that orthogonalises that
parameter, so every rank saves (and later loads) its own file.  A checkpoint
records the train stage's params digest (`Params.stage_digest("train")`) and the
world size it was made with; resuming under different ones is refused rather
than silently training something else (other stages' params may change).

Nothing in a checkpoint needs code to load: the state is tensors and plain
containers (the RNG states too, converted to tensors and ints), read with
``torch.load(weights_only=True)``.  The file is a header and that archive,
like the quantised artifact (all integers little-endian)::

    offset  size  field
    0       8     magic            b"PGOLFCK\\x00"
    8       4     format version   uint32 (FORMAT_VERSION)
    12      8     payload length   uint64
    20      32    payload sha256
    52      ...   payload          a torch.save archive

The header and digest are checked before a byte of the payload is
deserialised.  The digest guards against a damaged or foreign file; against a
hostile one it is `weights_only` that keeps code from running.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import atomic
from pipeline.errors import TrainingError
from pipeline.runtime import accelerator_rng_state, set_accelerator_rng_state

MAGIC = b"PGOLFCK\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQ32s")
_CHECKPOINT_NAME = re.compile(r"resume\.rank\d+\.pt")


def checkpoint_path(work_dir: Path, rank: int) -> Path:
    return Path(work_dir) / f"resume.rank{rank}.pt"


def is_checkpoint_name(name: str) -> bool:
    return _CHECKPOINT_NAME.fullmatch(name) is not None


def rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain numbers (no numpy or tuple pickles)."""
    version, internal, gauss = random.getstate()
    _name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        **accelerator_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), int(npy["pos"]),
                         int(npy["has_gauss"]), float(npy["cached_gaussian"])))
    torch.set_rng_state(state["torch"])
    set_accelerator_rng_state(state)


def save_checkpoint(work_dir: Path, rank: int, state: dict[str, Any]) -> Path:
    path = checkpoint_path(work_dir, rank)
    buf = io.BytesIO()
    torch.save({**state, "rng": rng_state()}, buf)
    payload = buf.getbuffer()
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), hashlib.sha256(payload).digest())
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The state in a checkpoint file, after its header and sha256 check out; plain data only."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise TrainingError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
    head = blob[: len(MAGIC)]
    if head != MAGIC:
        raise TrainingError(f"{path}: not a pgolf resume checkpoint (magic {head!r}, expected {MAGIC!r}); "
                            "refusing to load it")
    if len(blob) < _HEADER.size:
        raise TrainingError(f"{path}: truncated: {len(blob)} bytes, shorter than the {_HEADER.size}-byte header")
    _magic, version, length, digest = _HEADER.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise TrainingError(f"{path}: checkpoint format version {version}; this pgolf reads {FORMAT_VERSION}")
    payload = memoryview(blob)[_HEADER.size:]
    if len(payload) != length:
        raise TrainingError(f"{path}: payload has {len(payload)} bytes, the header says {length}")
    if hashlib.sha256(payload).digest() != digest:
        raise TrainingError(f"{path}: corrupt: payload sha256 does not match the header; refusing to load it")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only met something that is not plain data
        named = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        detail = f" (it references {named.group(1)})" if named else ""
        raise TrainingError(f"{path}: refused: holds more than tensors and plain data{detail}; "
                            "nothing in it was run") from None
    except Exception as exc:  # a damaged archive whose digest was rewritten to match
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainingError(f"{path}: unreadable checkpoint archive ({first})") from None
    if not isinstance(state, dict):
        raise TrainingError(f"{path}: expected a mapping of training state, got {type(state).__name__}")
    return state


def load_checkpoint(work_dir: Path, rank: int, params_digest: str, world_size: int) -> dict[str, Any]:
    """The checkpoint of `rank`, refused unless made with the same train-stage params
    (`params_digest` = `Params.stage_digest("train")`: other stages' params may change) and world size."""
    path = checkpoint_path(work_dir, rank)
    if not path.is_file():
        raise TrainingError(f"{path}: no checkpoint to resume from")
    state = read_checkpoint(path)
    digest = state.get("params_digest")
    if digest != params_digest:
        raise TrainingError(f"{path}: made with different params for the train stage (digest {str(digest)[:12]}, "
                            f"now {params_digest[:12]}); start afresh without --resume")
    if state.get("world_size") != world_size:
        raise TrainingError(f"{path}: made with world size {state.get('world_size')}, now {world_size}")
    set_rng_state(state["rng"])
    return state
