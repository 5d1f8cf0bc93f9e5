"""What each parameter is, by name: control tensors, optimiser groups, size categories.

Names follow the reference (SPEC §2), so these rules also hold for a
reference state dict.  Three groups feed the optimisers (SPEC §3):

- matrix (Muon): the 2-D weights inside `blocks.*` plus `bigram.proj.weight`;
- embed (AdamW, embed lr): `tok_emb.weight`, `bigram.embed.weight`;
- scalar (AdamW, scalar lr): everything else: every vector, scalar and control
  tensor, `skip_weights`, and the Canon convolution weights (3-D) and gates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from pipeline.errors import PgolfError

# Small tensors that steer the residual stream: kept in fp32 in training and
# in the artifact, optimised by the scalar AdamW group.  Matched as substrings;
# "canon" takes every parameter of a Canon layer (conv weight, bias, gate):
# a few thousand numbers per layer, cheap to keep exact.
CONTROL_TENSOR_PATTERNS: tuple[str, ...] = (
    "attn_scale",
    "mlp_scale",
    "resid_mix",
    "q_gain",
    "skip_weights",
    "smear.gate",
    "bigram.scale",
    "canon",
    # The frontier switches (docs/frontier.md): skip gates, lane mixes, the
    # token smear's lambda, the sparse attention gate (2-D but tiny).
    "skip_gates",
    "parallel_post_lambdas",
    "parallel_resid_lambdas",
    "smear.lam",
    "attn_gate_w",
)

EMBED_PARAMS: tuple[str, ...] = ("tok_emb.weight", "bigram.embed.weight")
EXTRA_MATRIX_PARAMS: tuple[str, ...] = ("bigram.proj.weight",)


def is_control_tensor(name: str) -> bool:
    """True for the gains, scales, mixes and gates of SPEC §3's scalar list."""
    return any(pattern in name for pattern in CONTROL_TENSOR_PATTERNS)


@dataclass
class ParamGroups:
    """Named parameters split into the three optimiser groups of SPEC §3."""

    matrix: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    embed: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    scalar: list[tuple[str, nn.Parameter]] = field(default_factory=list)


class UnknownParameterError(PgolfError, ValueError):
    """A parameter matches no optimiser group rule."""


def param_group(name: str, ndim: int) -> str:
    """'matrix', 'embed' or 'scalar' for one parameter; the one rule every optimiser uses.

    Control tensors come before the block rule because `resid_mix` is 2-D.  A
    name no rule covers raises, so a new module cannot silently train with the
    wrong optimiser.
    """
    if name in EMBED_PARAMS:
        return "embed"
    if name in EXTRA_MATRIX_PARAMS:
        return "matrix"
    if is_control_tensor(name):
        return "scalar"
    if name.startswith("blocks.") and ndim == 2:
        return "matrix"
    if name.startswith("blocks.") and ndim < 2:
        return "scalar"
    raise UnknownParameterError(
        f"parameter {name!r} (ndim {ndim}) matches no optimiser group; add it to pipeline/model/naming.py")


def split_param_groups(model: nn.Module) -> ParamGroups:
    """Every trainable parameter of `model`, each in exactly one group, in `named_parameters` order."""
    groups = ParamGroups()
    for name, param in model.named_parameters():
        if param.requires_grad:
            getattr(groups, param_group(name, param.ndim)).append((name, param))
    return groups


SIZE_CATEGORIES: tuple[str, ...] = ("embeddings", "bigram", "attention", "mlp", "canon", "control/other")


def size_category(name: str, ndim: int) -> str:
    """Category for parameter counts: the weight matrices by role, the rest as control/other."""
    if name.startswith("tok_emb."):
        return "embeddings"
    if name.startswith("bigram."):
        return "bigram"
    if ".canon_" in name:
        return "canon"
    if ".attn." in name and ndim >= 2:
        return "attention"
    if ".mlp." in name and ndim >= 2:
        return "mlp"
    return "control/other"


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameter count per size category, plus 'total'."""
    counts = dict.fromkeys(SIZE_CATEGORIES, 0)
    for name, param in model.named_parameters():
        counts[size_category(name, param.ndim)] += param.numel()
    counts["total"] = sum(counts.values())
    return counts
