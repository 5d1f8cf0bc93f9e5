"""Mixed per-tensor quantisation of a state dict (SPEC §4), and its inverse.

Each tensor gets one storage *scheme* (`pipeline.quant.schemes`), decided
from its name, dtype and size:

- ``raw``   non-float tensors, stored unchanged;
- ``fp16``  float tensors with at most ``keep_float_max_numel`` elements: too
            small for quantisation to pay for its scales;
- ``fp32``  larger control tensors (category ``control`` in `pipeline.model.naming.PARAM_RULES`: gains,
            mixes, gates), kept exact; 2-D control tensors of any size take
            ``quant.control_matrix_scheme`` instead when it is not fp32 (int8row:
            the 04-27 record's per-row int8 gates), only those whose names end in
            one of ``quant.control_matrix_suffixes`` when it is not empty;
- 2-D weights: their category's scheme, ``quant.schemes.<category>`` (the
  record: int6 for mlp and attn, int8 for embed and other);
- every other float tensor: ``quant.non_matrix_scheme`` (the record: int8).

Integer schemes are rounded by the method ``quant.method`` (`pipeline.quant.methods`);
then LQER (`pipeline.quant.lqer`, ``quant.lqer.top_k`` > 0) may add a low-rank
correction to the integer-coded weight matrices (not control tensors) with the largest error.

The size test comes first, as in the reference: a control tensor small enough
to keep is stored fp16 like any other small tensor.  That order is what the
SPEC §7 golden (G3 after quantisation: 11.298460) was computed with; keeping
small control tensors fp32 instead gives 11.298407.

The quantised form is plain data: per tensor a dict of tensors and strings, so
the artifact can hold it and ``torch.load(weights_only=True)`` can read it.
The integer math lives in `pipeline.quant.rowwise` (shared with late QAT).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from pipeline.config import QuantConfig
from pipeline.model.naming import quant_category
from pipeline.quant.lqer import correction, select_and_correct
from pipeline.quant.methods import get_method
from pipeline.quant.schemes import SCHEMES, as_rows, get_scheme


def tensor_category(name: str) -> str:
    """embed | mlp | attn | other (the keys of `QuantConfig.schemes`) or control: the parameter's
    quantisation category in `pipeline.model.naming.PARAM_RULES`; an unknown name raises."""
    return quant_category(name)


def choose_scheme(name: str, tensor: Tensor, cfg: QuantConfig) -> str:
    """The SPEC §4 rule for one tensor.  Non-float tensors (never parameters) are stored raw;
    every float tensor is looked up in the parameter table, so an unknown name raises."""
    if not tensor.is_floating_point():
        return "raw"
    category = tensor_category(name)
    if (category == "control" and tensor.ndim == 2 and cfg.control_matrix_scheme != "fp32"
            and (not cfg.control_matrix_suffixes or name.endswith(tuple(cfg.control_matrix_suffixes)))):
        return cfg.control_matrix_scheme  # before the size test, as the 04-27 record routes its gates
    if tensor.numel() <= cfg.keep_float_max_numel:
        return "fp16"
    if category == "control":
        return "fp32"
    if tensor.ndim == 2:
        return getattr(cfg.schemes, category)
    return cfg.non_matrix_scheme


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    """Inverse of `dtype_name` for the dtypes a state dict may hold."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def quantize_tensor(name: str, tensor: Tensor, cfg: QuantConfig,
                    inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One tensor -> {"scheme", "dtype", "shape", <the scheme's fields>} (plain types and tensors).

    `inputs` are what the method declares it `needs` (`pipeline.quant.methods`)."""
    t = tensor.detach().to("cpu").contiguous()
    scheme = get_scheme(choose_scheme(name, t, cfg))
    # The registry's own name string: one object per scheme, so the archive's pickle is the same
    # whichever params object named the scheme (pickle shares repeated objects by identity).
    entry: dict[str, Any] = {"scheme": scheme.name, "dtype": dtype_name(t.dtype), "shape": list(t.shape)}
    if scheme.kept:
        entry.update(scheme.store(t))
    else:
        given = {**(inputs or {}), "category": tensor_category(name)}
        entry.update(get_method(cfg.method).encode(name, as_rows(t), scheme, cfg, given))
    return entry


def dequantize_tensor(entry: Mapping[str, Any]) -> Tensor:
    """Inverse of `quantize_tensor`, in the original dtype and shape (LQER correction added in fp32)."""
    scheme = get_scheme(entry["scheme"])
    dtype, shape = dtype_from_name(entry["dtype"]), tuple(entry["shape"])
    if "lqer" not in entry:
        return scheme.decode(entry, dtype, shape)
    base = scheme.decode(entry, torch.float32, shape)
    return (base + correction(entry).reshape(shape)).to(dtype)


def quantize_state_dict(state_dict: Mapping[str, Tensor], cfg: QuantConfig,
                        inputs: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Quantise every tensor; keeps the state dict's key order; then the LQER corrections, if on."""
    out = {name: quantize_tensor(name, tensor, cfg, inputs) for name, tensor in state_dict.items()}
    if cfg.lqer.top_k > 0:
        # Candidates: the integer-coded weight matrices; control tensors (int8row gates) are not, as in
        # the 04-27 record, whose LQER looks only at its GPTQ-coded matrices.
        coded = {name: get_scheme(e["scheme"]).decode(e, torch.float32, tuple(e["shape"]))
                 for name, e in out.items() if not get_scheme(e["scheme"]).kept and len(e["shape"]) == 2
                 and tensor_category(name) != "control"}
        select_and_correct(state_dict, out, coded, cfg.lqer)
    return out


def dequantize_state_dict(quantized: Mapping[str, Mapping[str, Any]]) -> dict[str, Tensor]:
    """The state dict a model loads: every tensor back in its original dtype and shape."""
    return {name: dequantize_tensor(entry) for name, entry in quantized.items()}


def scheme_counts(quantized: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """How many tensors each scheme got (int6 and int8 always, other schemes when used), plus
    ``kept`` = the tensors of kept schemes, fp16 + fp32 + raw (SPEC §7 counts)."""
    counts = Counter(entry["scheme"] for entry in quantized.values())
    out = {scheme: counts.get(scheme, 0) for scheme in SCHEMES
           if scheme in ("int6", "int8", "fp16", "fp32", "raw") or counts.get(scheme)}
    out["kept"] = sum(n for scheme, n in out.items() if get_scheme(scheme).kept)
    return out
