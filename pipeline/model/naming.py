"""What each parameter is, by name: one table of rules every consumer asks.

Names follow the reference (SPEC §2), so these rules also hold for a reference
state dict.  `PARAM_RULES` maps a name pattern to everything the pipeline needs
to know about a parameter:

- ``group``: the optimiser group (SPEC §3): ``matrix`` (Muon, matrix lr),
  ``embed`` (AdamW, embed lr), ``scalar`` (AdamW, scalar lr);
- ``quant``: the quantisation category (SPEC §4): ``embed``, ``mlp``, ``attn``,
  ``other`` (the keys of ``quant.schemes``, used for 2-D weights) or
  ``control`` (gains, scales, mixes, gates: kept exact, fp32 when too large
  for the fp16 cut);
- ``size``: the row of the parameter-count table (`SIZE_CATEGORIES`);
- ``init``: how `pipeline.model.init` initialises it (`INIT_RULES`);
- ``flops``: whether every token multiplies by it (the FLOP estimate of
  `pipeline.bench`; ``tok_emb.weight`` counts as the tied output head).

A name no rule matches raises `UnknownParameterError` in every consumer, so a
new module cannot silently train with the wrong optimiser, quantise in the
wrong category or be left out of the FLOP count.  Adding a parameter is one
`ParamRule` line here (see docs/architecture.md, "How to add a model component").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from pipeline.errors import PgolfError

GroupName = Literal["matrix", "embed", "scalar"]
QuantCategory = Literal["embed", "mlp", "attn", "other", "control"]
InitRule = Literal["module", "normal", "zeros", "orthogonal", "orthogonal_scaled"]

GROUP_NAMES: tuple[GroupName, ...] = ("matrix", "embed", "scalar")
QUANT_CATEGORIES: tuple[QuantCategory, ...] = ("embed", "mlp", "attn", "other", "control")
SIZE_CATEGORIES: tuple[str, ...] = ("embeddings", "bigram", "attention", "mlp", "canon", "control/other")

# What each init rule does (pipeline/model/init.py applies them):
INIT_RULES: dict[InitRule, str] = {
    "module": "left as its module's constructor made it",
    "normal": "normal(0, model.tied_embed_init_std)",
    "zeros": "zeros (the block starts as the identity)",
    "orthogonal": "orthogonal, gain 1, when both sides are >= 64; else left as constructed",
    "orthogonal_scaled": "as orthogonal, then scaled by 1/sqrt(2 num_layers)",
}


@dataclass(frozen=True)
class ParamRule:
    """Everything the pipeline decides from one parameter's name."""

    # Regular expression the whole parameter name must match.
    pattern: str
    group: GroupName
    quant: QuantCategory
    size: str
    init: InitRule = "module"
    flops: bool = False

    def matches(self, name: str) -> bool:
        return re.fullmatch(self.pattern, name) is not None


_BLOCK = r"blocks\.\d+\."

# The table.  Patterns are disjoint (tests/model/test_naming.py checks it on every SPEC name).
PARAM_RULES: tuple[ParamRule, ...] = (
    ParamRule(r"tok_emb\.weight", "embed", "embed", "embeddings", init="normal", flops=True),
    ParamRule(r"bigram\.embed\.weight", "embed", "other", "bigram"),
    ParamRule(r"bigram\.proj\.weight", "matrix", "other", "bigram", init="orthogonal_scaled", flops=True),
    ParamRule(r"bigram\.scale", "scalar", "control", "bigram"),
    ParamRule(r"smear\.gate", "scalar", "control", "control/other"),
    ParamRule(r"skip_weights", "scalar", "control", "control/other"),
    ParamRule(_BLOCK + r"(attn_scale|mlp_scale|resid_mix)", "scalar", "control", "control/other"),
    ParamRule(_BLOCK + r"attn\.c_[qkv]\.weight", "matrix", "attn", "attention", init="orthogonal", flops=True),
    ParamRule(_BLOCK + r"attn\.proj\.weight", "matrix", "attn", "attention", init="zeros", flops=True),
    ParamRule(_BLOCK + r"attn\.q_gain", "scalar", "control", "control/other"),
    ParamRule(_BLOCK + r"mlp\.fc\.weight", "matrix", "mlp", "mlp", init="orthogonal", flops=True),
    ParamRule(_BLOCK + r"mlp\.proj\.weight", "matrix", "mlp", "mlp", init="zeros", flops=True),
    # Canon layers (A, C in the block; B in the attention, D in the MLP): conv weight, bias, gate.
    ParamRule(_BLOCK + r"((attn|mlp)\.)?canon_[abcd]\.(conv\.weight|conv\.bias|delta_gate_logit)",
              "scalar", "control", "canon"),
    # The frontier switches (docs/frontier.md): skip gates, the two lanes' mixes, the token
    # smear's lambda (its gate is `smear.gate` above), the sparse attention gate (2-D, 96 numbers
    # per layer in the record: a matmul per token, kept exact like the other gates).
    ParamRule(r"skip_gates", "scalar", "control", "control/other"),
    ParamRule(r"parallel_(post|resid)_lambdas", "scalar", "control", "control/other"),
    ParamRule(r"smear\.lam", "scalar", "control", "control/other"),
    ParamRule(_BLOCK + r"attn\.attn_gate_w", "scalar", "control", "control/other", flops=True),
)


class UnknownParameterError(PgolfError, ValueError):
    """A parameter name matches no rule of `PARAM_RULES`."""


def rule_for(name: str) -> ParamRule:
    """The rule of one parameter name; `UnknownParameterError` naming it when none matches."""
    for rule in PARAM_RULES:
        if rule.matches(name):
            return rule
    raise UnknownParameterError(
        f"parameter {name!r} matches no rule; add a ParamRule for it to PARAM_RULES in pipeline/model/naming.py")


def param_group(name: str) -> GroupName:
    """'matrix', 'embed' or 'scalar': the optimiser group of one parameter (SPEC §3)."""
    return rule_for(name).group


def quant_category(name: str) -> QuantCategory:
    """embed | mlp | attn | other | control: the quantisation category of one parameter (SPEC §4)."""
    return rule_for(name).quant


def is_control_tensor(name: str) -> bool:
    """True for the gains, scales, mixes and gates of SPEC §3's scalar list."""
    return rule_for(name).quant == "control"


def size_category(name: str) -> str:
    """Row of the parameter-count table (`SIZE_CATEGORIES`)."""
    return rule_for(name).size


def init_rule(name: str) -> InitRule:
    """How `pipeline.model.init` initialises the parameter (`INIT_RULES`)."""
    return rule_for(name).init


def counts_flops(name: str) -> bool:
    """True for the matrices every token multiplies by (the tied head included)."""
    return rule_for(name).flops


@dataclass
class ParamGroups:
    """Named parameters split into the three optimiser groups of SPEC §3."""

    matrix: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    embed: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    scalar: list[tuple[str, nn.Parameter]] = field(default_factory=list)


def split_param_groups(model: nn.Module) -> ParamGroups:
    """Every trainable parameter of `model`, each in exactly one group, in `named_parameters` order."""
    groups = ParamGroups()
    for name, param in model.named_parameters():
        if param.requires_grad:
            getattr(groups, param_group(name)).append((name, param))
    return groups


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameter count per size category, plus 'total'."""
    counts = dict.fromkeys(SIZE_CATEGORIES, 0)
    for name, param in model.named_parameters():
        counts[size_category(name)] += param.numel()
    counts["total"] = sum(counts.values())
    return counts
