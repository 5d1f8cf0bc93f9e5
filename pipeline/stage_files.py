"""Guarded readers (and the writers) for the files one stage hands to the next.

Each reader turns every way such a file can be wrong -- missing, unreadable,
truncated, not a dict, a missing key, a value of the wrong type, a torch
archive that would need code to unpickle -- into one `PgolfError` line that
names the file, so no stage meets a traceback on a damaged input.  The
readers check shape, not meaning: `pipeline.weights_check` compares weights
with the configured model.  The JSON records come back as the typed objects
of `pipeline.records`, and the stages write them with the `write_*` functions
here, so no other module handles them by string keys.

    averaged.pt / final.pt / ema.pt   read_state_dict      {name: Tensor}
    snapshots.pt                      read_snapshots       {"steps": [int], "states": [{name: Tensor}]}
    size.json                         read_size_report     SizeReport (its "size" section)
    train_summary.json                read_train_summary   TrainSummary
    metrics/seeds/seed_N.json         read_seed_metrics    SeedMetrics
    data manifest.json                read_manifest        {"format", "tokenizer", "splits", ...}
"""

from __future__ import annotations

import json
import math
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pipeline import atomic
from pipeline.errors import PgolfError, first_line
from pipeline.records import PASSES, CodeFile, Figures, SeedMetrics, SizeReport, TrainSummary

_NUMBER = (int, float)


def describe_load_error(exc: BaseException) -> str:
    """One line for why `torch.load(..., weights_only=True)` failed.

    torch's refusal of a pickled object spans several lines of advice; what
    matters is the global it refused.
    """
    text = str(exc)
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text) or re.search(r"(Unsupported [^.\n]+)", text)
        what = found.group(1) if found else "a non-tensor object"
        return f"refused: it holds {what}, which only code could rebuild (pgolf loads weights only)"
    if isinstance(exc, EOFError):
        return "truncated: the file ends early"
    if "central directory" in text or "zip archive" in text:
        return "truncated or corrupt: not a complete torch archive"
    return f"not a torch archive ({type(exc).__name__}: {first_line(exc)})"


def torch_archive(path: Path, what: str) -> Any:
    """`torch.load(weights_only=True)` of `path`, or one PgolfError line naming it."""
    path = Path(path)
    if not path.is_file():
        raise PgolfError(f"{path}: missing ({what})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise PgolfError(f"{path}: cannot read ({exc.strerror or first_line(exc)})") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            KeyError, IndexError, UnicodeDecodeError) as exc:
        raise PgolfError(f"{path}: {describe_load_error(exc)}") from None


def _state_dict(value: Any, path: Path, where: str) -> dict[str, Tensor]:
    if not isinstance(value, dict) or not value:
        kind = "an empty dict" if isinstance(value, dict) else type(value).__name__
        raise PgolfError(f"{path}: {where} is {kind}, expected a state dict (parameter name -> tensor)")
    for name, tensor in value.items():
        if not isinstance(name, str):
            raise PgolfError(f"{path}: {where} has a non-string key {name!r}")
        if not isinstance(tensor, Tensor):
            raise PgolfError(f"{path}: {where} entry {name!r} is {type(tensor).__name__}, expected a tensor")
    return value


def read_state_dict(path: Path, what: str = "weights") -> dict[str, Tensor]:
    """A {name: Tensor} file: averaged.pt, final.pt, ema.pt, or a user's checkpoint."""
    return _state_dict(torch_archive(path, what), Path(path), "the file")


def read_snapshots(path: Path) -> tuple[list[int], list[dict[str, Tensor]]]:
    """snapshots.pt: (steps, states), as many of one as of the other."""
    path = Path(path)
    bundle = torch_archive(path, "SWA snapshots written by `pgolf train`")
    if not isinstance(bundle, dict) or not {"steps", "states"} <= bundle.keys():
        raise PgolfError(f"{path}: expected a dict with 'steps' and 'states' (SWA snapshots)")
    steps, states = bundle["steps"], bundle["states"]
    if not isinstance(steps, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps):
        raise PgolfError(f"{path}: 'steps' must be a list of integers")
    if not isinstance(states, list) or len(states) != len(steps):
        raise PgolfError(f"{path}: 'states' must be a list with one state dict per step ({len(steps)})")
    for step, state in zip(steps, states):
        _state_dict(state, path, f"the snapshot of step {step}")
    return steps, states


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file holding an object, or one PgolfError line naming it."""
    path = Path(path)
    if not path.is_file():
        raise PgolfError(f"{path}: missing ({what})")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PgolfError(f"{path}: cannot read ({exc.strerror or first_line(exc)})") from None
    except UnicodeDecodeError as exc:
        raise PgolfError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PgolfError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, dict):
        raise PgolfError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _field(obj: dict[str, Any], key: str, kinds: tuple[type, ...], path: Path, where: str = "") -> Any:
    """obj[key], checked to be one of `kinds` (bools are not numbers; numbers are finite)."""
    label = f"{where}{key}"
    if key not in obj:
        raise PgolfError(f"{path}: no {label!r} field")
    value = obj[key]
    wrong = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    if not wrong and isinstance(value, float) and not math.isfinite(value):
        raise PgolfError(f"{path}: {label!r} is {value}, expected a finite number")
    if wrong:
        raise PgolfError(f"{path}: {label!r} is {json.dumps(value)[:40]}, expected {_kind_name(kinds)}")
    return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    if kinds == _NUMBER:
        return "a number"
    names = {int: "an integer", str: "a string", dict: "an object", list: "a list", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


SIZE_FIELDS = ("model_bytes", "code_bytes", "total_bytes", "cap_bytes", "headroom_bytes")
SCORE_FIELD = "sliding_bpb"


def read_size_report(path: Path) -> SizeReport:
    """size.json's "size" section as the `SizeReport` quantize wrote: model, code and total bytes
    and the cap (integers), the embedded code files, `modules_sha256` and the stage digests."""
    path = Path(path)
    report = read_json_object(path, "written by `pgolf quantize`")
    size = _field(report, "size", (dict,), path)
    ints = {key: _field(size, key, (int,), path, "size.") for key in SIZE_FIELDS}
    files = [CodeFile(path=_field(f, "path", (str,), path, f"size.files[{i}]."),
                      bytes=_field(f, "bytes", (int,), path, f"size.files[{i}]."))
             for i, f in enumerate(_list_of_objects(size, "files", path, "size."))]
    digests = _field(size, "stage_digests", (dict,), path, "size.") if "stage_digests" in size else {}
    return SizeReport(
        **ints,
        within_cap=_field(size, "within_cap", (bool,), path, "size."),
        files=files,
        modules_sha256=_field(size, "modules_sha256", (str,), path, "size.") if "modules_sha256" in size else "",
        stage_digests={str(k): str(v) for k, v in digests.items()},
    )


def _list_of_objects(obj: dict[str, Any], key: str, path: Path, where: str) -> list[dict[str, Any]]:
    """obj[key] when present: a list of JSON objects ([] when absent)."""
    items = _field(obj, key, (list,), path, where) if key in obj else []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise PgolfError(f"{path}: '{where}{key}[{i}]' is not an object")
    return items


# train_summary.json: each field's JSON type (qat_step may be null; final_train_loss may be NaN).
TRAIN_SUMMARY_FIELDS = {"steps": (int,), "train_seconds": _NUMBER, "mean_step_ms": _NUMBER,  # what later stages use
                        "seed": (int,), "world_size": (int,), "device": (str,), "stopped_by": (str,),
                        "tokens_seen": (int,), "tokens_per_second": _NUMBER, "compile_warmup_seconds": _NUMBER,
                        "peak_memory_bytes": (int,), "snapshot_steps": (list,), "params_digest": (str,)}


def read_train_summary(path: Path) -> TrainSummary:
    """train_summary.json as the `TrainSummary` `pgolf train` wrote, every field checked."""
    path = Path(path)
    summary = read_json_object(path, "written by `pgolf train`")
    values = {key: _field(summary, key, kinds, path) for key, kinds in TRAIN_SUMMARY_FIELDS.items()}
    qat_step = summary.get("qat_step")
    if qat_step is not None:
        _field(summary, "qat_step", (int,), path)
    loss = summary.get("final_train_loss")
    if not isinstance(loss, _NUMBER) or isinstance(loss, bool):
        raise PgolfError(f"{path}: 'final_train_loss' is {json.dumps(loss)[:40]}, expected a number")
    loop_step = summary.get("loop_step")  # absent in summaries written before depth recurrence
    if loop_step is not None:
        _field(summary, "loop_step", (int,), path)
    process_group = summary.get("process_group")  # absent in summaries written before train.launcher
    if process_group is not None:
        _field(summary, "process_group", (str,), path)
    outputs = _field(summary, "outputs_sha256", (dict,), path) if "outputs_sha256" in summary else {}
    return TrainSummary(**values, qat_step=qat_step, final_train_loss=float(loss),
                        outputs_sha256={str(k): str(v) for k, v in outputs.items()}, loop_step=loop_step,
                        process_group=process_group)


def read_seed_metrics(path: Path, seed: int) -> SeedMetrics:
    """metrics/seeds/seed_N.json as the `SeedMetrics` `pgolf evaluate` wrote: a finite score first,
    the seed it claims to be, then every figure."""
    path = Path(path)
    metrics = read_json_object(path, f"run `pgolf evaluate --seed {seed}`")
    _field(metrics, SCORE_FIELD, _NUMBER, path)
    if "seed" in metrics and metrics["seed"] != seed:
        raise PgolfError(f"{path}: holds the metrics of seed {metrics['seed']!r}, not {seed}")
    passes = {name: Figures(loss=_field(metrics, f"{name}_loss", _NUMBER, path),
                            bpb=_field(metrics, f"{name}_bpb", _NUMBER, path),
                            tokens=_field(metrics, f"{name}_tokens", (int,), path),
                            seconds=_field(metrics, f"{name}_seconds", _NUMBER, path))
              for name in PASSES}
    ints = {key: _field(metrics, key, (int,), path) for key in ("steps", "model_bytes", "code_bytes", "total_bytes")}
    numbers = {key: _field(metrics, key, _NUMBER, path) for key in ("train_seconds", "mean_step_ms")}
    extra = {key: _field(metrics, key, (dict,), path) for key in ("eval", "provenance") if key in metrics}
    seed_field = _field(metrics, "seed", (int,), path) if "seed" in metrics else None
    ttt = {key: value for key, value in metrics.items() if key.startswith("ttt_")} or None
    if ttt is not None:
        for key in ("ttt_loss", "ttt_bpb", "ttt_seconds"):
            _field(metrics, key, _NUMBER, path)
    return SeedMetrics(**passes, **ints, **numbers, seed=seed_field, ttt=ttt, **extra)


def write_train_summary(path: Path, summary: TrainSummary) -> None:
    atomic.write_json(path, summary.to_dict())


def write_seed_metrics(path: Path, metrics: SeedMetrics) -> None:
    atomic.write_json(path, metrics.to_dict())


def write_size_json(path: Path, artifact: dict[str, Any], size: SizeReport) -> None:
    """size.json: {"artifact": the artifact's stats, "size": the size report}."""
    atomic.write_json(path, {"artifact": artifact, "size": size.to_dict()})


def read_manifest(path: Path) -> dict[str, Any]:
    """The data directory's manifest.json: format, tokenizer and both splits."""
    path = Path(path)
    manifest = read_json_object(path, "run `pgolf prepare`")
    _field(manifest, "format", (int,), path)
    tokenizer = _field(manifest, "tokenizer", (dict,), path)
    _field(tokenizer, "vocab_size", (int,), path, "tokenizer.")
    _field(tokenizer, "sha256", (str,), path, "tokenizer.")
    splits = _field(manifest, "splits", (dict,), path)
    for split in ("val", "train"):
        record = _field(splits, split, (dict,), path, "splits.")
        shards = _field(record, "shards", (list,), path, f"splits.{split}.")
        for i, shard in enumerate(shards):
            if not isinstance(shard, dict):
                raise PgolfError(f"{path}: 'splits.{split}.shards[{i}]' is not an object")
            _field(shard, "file", (str,), path, f"splits.{split}.shards[{i}].")
            _field(shard, "sha256", (str,), path, f"splits.{split}.shards[{i}].")
    return manifest
