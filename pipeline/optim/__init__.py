"""Optimisers and schedules of SPEC §3: Muon for the matrices, AdamW for the
embeddings and control tensors, lr warm-down and Muon momentum warm-up.

Gradient clipping is ``torch.nn.utils.clip_grad_norm_`` in the training loop.
"""

from pipeline.optim.groups import (
    GROUP_NAMES,
    OptimizerBundle,
    UnknownParameterError,
    build_optimizers,
    split_params,
)
from pipeline.optim.muon import Muon, newton_schulz
from pipeline.optim.schedule import lr_multiplier, muon_momentum, training_frac

__all__ = [
    "GROUP_NAMES",
    "Muon",
    "OptimizerBundle",
    "UnknownParameterError",
    "build_optimizers",
    "lr_multiplier",
    "muon_momentum",
    "newton_schulz",
    "split_params",
    "training_frac",
]
