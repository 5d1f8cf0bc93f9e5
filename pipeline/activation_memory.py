"""Training memory of the configured model, worked out on any machine from the compiled graph.

A training step's peak memory is the persistent state (fp32 weights, their
gradients, the optimisers' moments) plus the activations the forward pass
keeps for the backward pass.  Which activations are kept is not visible in the
model code: torch.compile's partitioner (AOTAutograd's min-cut, run here with
Inductor's decompositions and settings, as `torch.compile` does on the GPU)
recomputes cheap element-wise results in the backward pass and saves the rest.
Tracing the compiled forward once on the CPU lists exactly the tensors the
backward graph will receive, with their dtypes and shapes, without a GPU and
without Inductor's code generation.

Saved bytes grow linearly with the batch, so two traces (1 and 2 sequences)
give the bytes per sequence and the batch-independent rest (weight casts,
rotary tables), and from them any batch.  Not counted: transient buffers
(logit gradients, attention workspaces, the DDP and Muon communication
buffers), which come on top of the peak this gives.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from pipeline.model import GPT
from pipeline.model.naming import param_group

# Optimiser moments per parameter (fp32, like the weights): Muon keeps one
# momentum buffer, AdamW exp_avg and exp_avg_sq (SPEC §3).
MOMENTS_PER_GROUP = {"matrix": 1, "embed": 2, "scalar": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    batch_seqs: int
    seq_len: int
    autocast_dtype: str | None
    saved_bytes_per_seq: int  # activations saved for backward, per sequence
    saved_bytes_fixed: int  # saved tensors that do not grow with the batch
    saved_bytes: int  # at batch_seqs sequences
    state_bytes: int  # weights + gradients + optimiser moments
    total_bytes: int  # state + saved, the peak before transient buffers
    saved_per_seq_by_dtype: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def state_bytes(model: nn.Module) -> int:
    """Weights, one gradient each, and the optimiser moments of each parameter's group."""
    total = 0
    for name, p in model.named_parameters():
        copies = 2 + MOMENTS_PER_GROUP[param_group(name)]
        total += copies * p.numel() * p.element_size()
    return total


def _saved_tensor_bytes(gm: torch.fx.GraphModule) -> Counter[str]:
    """Bytes per dtype of the forward graph's outputs that are not graph inputs:
    the loss and the tensors saved for backward.  Views of one storage count once."""
    from torch.multiprocessing.reductions import StorageWeakRef

    output = next(n for n in gm.graph.nodes if n.op == "output")
    by_dtype: Counter[str] = Counter()
    seen: set[StorageWeakRef] = set()
    for node in output.args[0]:
        if not isinstance(node, torch.fx.Node) or node.op == "placeholder":
            continue  # parameters and inputs are resident anyway
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor):
            continue
        storage = value.untyped_storage()
        ref = StorageWeakRef(storage)
        if ref in seen:
            continue
        seen.add(ref)
        by_dtype[str(value.dtype).removeprefix("torch.")] += storage.nbytes()
    return by_dtype


def trace_saved_bytes(model: nn.Module, batch_seqs: int, seq_len: int,
                      autocast_dtype: torch.dtype | None, device: torch.device) -> Counter[str]:
    """Bytes per dtype that the compiled training forward saves for backward at this batch."""
    from functorch.compile import min_cut_rematerialization_partition
    from torch._dynamo.backends.common import aot_autograd
    from torch._inductor.decomposition import select_decomp_table

    captured: list[Counter[str]] = []

    def forward_compiler(gm: torch.fx.GraphModule, example_inputs: list) -> torch.fx.GraphModule:
        captured.append(_saved_tensor_bytes(gm))
        return gm  # run the traced graph as is: no code generation needed

    def partition(*args, **kwargs):
        return min_cut_rematerialization_partition(*args, compiler="inductor", **kwargs)

    backend = aot_autograd(fw_compiler=forward_compiler, bw_compiler=lambda gm, _: gm,
                           partition_fn=partition, decompositions=select_decomp_table())
    torch._dynamo.reset()  # a trace served from an earlier compile would capture nothing
    compiled = torch.compile(model, backend=backend, fullgraph=True, dynamic=False)
    ids = torch.zeros(batch_seqs, seq_len + 1, dtype=torch.long, device=device)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else torch.autocast(device.type, enabled=False))
    with autocast:
        compiled(ids[:, :-1], ids[:, 1:])
    torch._dynamo.reset()
    if len(captured) != 1:
        raise RuntimeError(f"expected one forward graph from the training model, traced {len(captured)}")
    return captured[0]


def estimate_training_memory(model: GPT, batch_seqs: int, seq_len: int,
                             autocast_dtype: torch.dtype | None, device: torch.device) -> MemoryEstimate:
    """State + saved activations of a training step of `batch_seqs` x `seq_len` tokens."""
    was_training = model.training
    model.train()
    try:
        one = trace_saved_bytes(model, 1, seq_len, autocast_dtype, device)
        two = trace_saved_bytes(model, 2, seq_len, autocast_dtype, device)
    finally:
        model.train(was_training)
    per_seq_by_dtype = {k: two[k] - one[k] for k in sorted(set(one) | set(two)) if two[k] != one[k]}
    per_seq = sum(two.values()) - sum(one.values())
    fixed = sum(one.values()) - per_seq
    saved = fixed + batch_seqs * per_seq
    state = state_bytes(model)
    return MemoryEstimate(
        batch_seqs=batch_seqs, seq_len=seq_len,
        autocast_dtype=str(autocast_dtype).removeprefix("torch.") if autocast_dtype is not None else None,
        saved_bytes_per_seq=per_seq, saved_bytes_fixed=fixed, saved_bytes=saved,
        state_bytes=state, total_bytes=state + saved, saved_per_seq_by_dtype=per_seq_by_dtype,
    )
