"""Which category a parameter's name puts it in: the keys of `QuantConfig.schemes` (and of GPTQ's clip sigmas)."""

from __future__ import annotations


def tensor_category(name: str) -> str:
    """embed | mlp | attn | other."""
    if "tok_emb" in name or "lm_head" in name:
        return "embed"
    if ".mlp." in name:
        return "mlp"
    if ".attn." in name:
        return "attn"
    return "other"
