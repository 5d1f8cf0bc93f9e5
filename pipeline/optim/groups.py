"""Which optimiser trains which parameter, and the bundle the loop drives.

The rule itself lives with the parameter names, in `pipeline.model.naming.PARAM_RULES`
(SPEC §2-§3), and so do the group names: the ``matrix`` group (the block matrices
and ``bigram.proj.weight``) goes to Muon at ``matrix_lr``; ``tok_emb.weight`` and ``bigram.embed.weight`` to AdamW at
``embed_lr``; every vector, scalar and control tensor (Canon weights and gates
included) to AdamW at ``scalar_lr``; an unknown name raises
`UnknownParameterError`.  The bundle's keys (in checkpoints and the step log) are
the group names.  Frozen parameters (``requires_grad=False``) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.config import TrainConfig
from pipeline.model.naming import GROUP_NAMES, GroupName, UnknownParameterError, param_group
from pipeline.optim.muon import ORTHOGONALIZERS, Muon, Orthogonalizer
from pipeline.runtime import Runtime

__all__ = ["GROUP_NAMES", "OptimizerBundle", "UnknownParameterError", "build_optimizers", "split_params"]


def split_params(named_params: Iterable[tuple[str, Tensor]]) -> dict[GroupName, list[tuple[str, Tensor]]]:
    """Partition trainable (name, param) pairs by `param_group`, keeping order
    (the Muon order decides which rank orthogonalises which matrix)."""
    groups: dict[GroupName, list[tuple[str, Tensor]]] = {g: [] for g in GROUP_NAMES}
    for name, p in named_params:
        if p.requires_grad:
            groups[param_group(name)].append((name, p))
    return groups


def _fused_adamw(params: list[Tensor]) -> bool:
    """Fused AdamW only when every parameter lives on a CUDA device."""
    return bool(params) and all(p.is_cuda for p in params)


@dataclass
class _Group:
    name: GroupName
    optimizer: torch.optim.Optimizer
    base_lr: float
    param_names: list[str]


class OptimizerBundle:
    """The three optimisers of SPEC §3, driven as one.

    Each step the loop calls ``set_schedule(lr_multiplier(...), muon_momentum(...))``,
    then ``step()`` and ``zero_grad()``.  ``state_dict()`` holds every optimiser's
    state (Muon's is complete on every rank; see pipeline/optim/muon.py).
    """

    def __init__(self, groups: list[_Group]) -> None:
        self._groups = {g.name: g for g in groups}

    @property
    def optimizers(self) -> dict[GroupName, torch.optim.Optimizer]:
        return {name: g.optimizer for name, g in self._groups.items()}

    @property
    def base_lrs(self) -> dict[GroupName, float]:
        return {name: g.base_lr for name, g in self._groups.items()}

    @property
    def param_names(self) -> dict[GroupName, list[str]]:
        return {name: list(g.param_names) for name, g in self._groups.items()}

    @property
    def muon(self) -> Muon | None:
        """The matrix group's optimiser."""
        g = self._groups.get("matrix")
        return g.optimizer if g is not None else None  # type: ignore[return-value]

    def lrs(self) -> dict[GroupName, float]:
        """The lr each group will use at the next step (for the step log)."""
        return {name: g.optimizer.param_groups[0]["lr"] for name, g in self._groups.items()}

    def set_schedule(self, lr_mul: float, momentum: float) -> None:
        """lr = base_lr * lr_mul for every group; Muon's momentum for this step."""
        for g in self._groups.values():
            for pg in g.optimizer.param_groups:
                pg["lr"] = g.base_lr * lr_mul
                if g.name == "matrix":
                    pg["momentum"] = momentum

    def step(self) -> None:
        for g in self._groups.values():
            g.optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self._groups.values():
            g.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: g.optimizer.state_dict() for name, g in self._groups.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != set(self._groups):
            raise ValueError(
                f"optimizer state has groups {sorted(state)}, this bundle has {sorted(self._groups)}"
            )
        for name, g in self._groups.items():
            g.optimizer.load_state_dict(state[name])


def build_optimizers(
    model_or_named_params: nn.Module | Iterable[tuple[str, Tensor]],
    cfg: TrainConfig,
    rt: Runtime | None = None,
    *,
    orthogonalize: Orthogonalizer | None = None,
) -> OptimizerBundle:
    """Muon for the block matrices and bigram.proj, AdamW for the rest (SPEC §3).

    ``rt`` gives Muon its rank and world size (None: one process).  Newton-Schulz
    is compiled when ``cfg.compile`` is set and ``rt`` is on CUDA, unless the
    caller passes its own ``orthogonalize``.  Groups with no parameters are
    omitted.  Muon's momentum starts at ``muon_momentum_warmup_start``; the
    loop sets it every step anyway.
    """
    rank, world_size = (rt.rank, rt.world_size) if rt is not None else (0, 1)
    if orthogonalize is None:
        compile_ns = cfg.compile and rt is not None and rt.is_cuda
        ns = ORTHOGONALIZERS[cfg.muon_variant.ns]
        orthogonalize = torch.compile(ns, dynamic=False) if compile_ns else ns
    named = (
        model_or_named_params.named_parameters()
        if isinstance(model_or_named_params, nn.Module)
        else model_or_named_params
    )
    split = split_params(named)
    groups: list[_Group] = []

    muon = split["matrix"]
    if muon:
        opt = Muon(
            [p for _, p in muon],
            lr=cfg.matrix_lr,
            momentum=cfg.muon_momentum_warmup_start,
            backend_steps=cfg.muon_backend_steps,
            weight_decay=cfg.muon_weight_decay,
            nesterov=True,
            rank=rank,
            world_size=world_size,
            orthogonalize=orthogonalize,
            row_normalize=cfg.muon_variant.row_normalize,
            momentum_dtype=torch.bfloat16 if cfg.muon_variant.momentum_dtype == "bf16" else None,
        )
        groups.append(_Group("matrix", opt, cfg.matrix_lr, [n for n, _ in muon]))

    decay = {"embed": cfg.embed_weight_decay, "scalar": cfg.adam_weight_decay}
    for name, lr in (("embed", cfg.embed_lr), ("scalar", cfg.scalar_lr)):
        pairs = split[name]
        if not pairs:
            continue
        params = [p for _, p in pairs]
        opt = torch.optim.AdamW(
            params,
            lr=lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_eps,
            weight_decay=decay[name],
            fused=_fused_adamw(params),
        )
        groups.append(_Group(name, opt, lr, [n for n, _ in pairs]))

    return OptimizerBundle(groups)
