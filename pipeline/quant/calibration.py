"""GPTQ's calibration: each linear layer's input Hessian H = mean over batches of X^T X.

Where it runs, and why: the quantize stage (`pipeline.quant.packing.method_inputs`)
collects the Hessians from the first ``quant.gptq.calibration_batches`` train
batches (``calibration_batch_tokens`` tokens each, rows of ``train.seq_len``),
reading the train shards, which dvc.yaml declares as a dependency of quantize.
Doing it in quantize rather than at the tail of train keeps train's outputs
(and its golden figures) unchanged and lets one trained seed be re-quantised
with other settings without retraining.  The challenge counts calibration
inside the 600 s training budget, so its seconds are measured here and recorded
in size.json (``artifact.calibration_seconds``); `pgolf report` adds them to the
training seconds against the cap.

The tied embedding's Hessian is that of the output head's input: the final
rms_norm of the last block's output, as the 04-27 record hooks its final norm.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.model.layers import CastedLinear, rms_norm


@dataclass(frozen=True)
class Calibration:
    hessians: dict[str, Tensor]  # parameter name -> (in, in) fp32, mean of X^T X per batch
    batches: int
    seconds: float


def collect_hessians(model: nn.Module, batches: Iterable[Tensor]) -> Calibration:
    """Run `model.logits` on each batch of token ids, summing X^T X at every CastedLinear's input."""
    t0 = time.perf_counter()
    sums: dict[str, Tensor] = {}

    def add(name: str, x: Tensor) -> None:
        x = x.detach().float().reshape(-1, x.shape[-1])
        if name not in sums:
            sums[name] = torch.zeros(x.shape[1], x.shape[1])
        sums[name].addmm_(x.T.cpu(), x.cpu())

    hooks = [module.register_forward_pre_hook(lambda m, args, name=f"{name}.weight": add(name, args[0]))
             for name, module in model.named_modules() if isinstance(module, CastedLinear)]
    blocks = getattr(model, "blocks", None)
    if blocks is not None and len(blocks) and hasattr(model, "tok_emb"):
        hooks.append(blocks[-1].register_forward_hook(lambda m, args, out: add("tok_emb.weight", rms_norm(out))))
    was_training = model.training
    model.eval()
    count = 0
    try:
        with torch.no_grad():
            for ids in batches:
                model.logits(ids)
                count += 1
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if count == 0:
        raise ValueError("GPTQ calibration got no batches")
    return Calibration({name: h / count for name, h in sums.items()}, count, time.perf_counter() - t0)


def train_batches(files, vocab_size: int, batches: int, batch_tokens: int, seq_len: int):
    """The first `batches` batches of `batch_tokens` tokens of the train stream, as (rows, seq_len) ids."""
    from pipeline.data.loader import DistributedTokenLoader

    loader = DistributedTokenLoader(files, 0, 1, vocab_size)
    for _ in range(batches):
        x, _ = loader.next_batch(batch_tokens, seq_len, 1)
        yield x
