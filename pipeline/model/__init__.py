"""The GPT of SPEC §2 and the name-based rules about its parameters."""

from pipeline.model.gpt import GPT
from pipeline.model.info import config_parameter_counts
from pipeline.model.naming import (
    PARAM_RULES,
    ParamGroups,
    ParamRule,
    UnknownParameterError,
    is_control_tensor,
    param_group,
    parameter_counts,
    split_param_groups,
)

__all__ = [
    "PARAM_RULES",
    "ParamRule",
    "UnknownParameterError",
    "GPT",
    "config_parameter_counts",
    "ParamGroups",
    "is_control_tensor",
    "param_group",
    "parameter_counts",
    "split_param_groups",
]
