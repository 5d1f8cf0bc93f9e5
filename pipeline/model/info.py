"""Parameter counts of a configured model, without allocating or initialising it."""

from __future__ import annotations

import torch

from pipeline.config import ModelConfig
from pipeline.model.gpt import GPT
from pipeline.model.naming import parameter_counts


def config_parameter_counts(cfg: ModelConfig) -> dict[str, int]:
    """Per-category counts (see `naming.SIZE_CATEGORIES`) and 'total' for `cfg`.

    The model is built on the meta device: shapes only, no memory, no init cost.
    """
    with torch.device("meta"):
        model = GPT(cfg)
    return parameter_counts(model)
