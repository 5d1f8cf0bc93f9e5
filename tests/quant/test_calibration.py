"""GPTQ calibration: the Hessians are the mean X^T X of each layer's inputs; the report adds their seconds
to training's against the challenge's 600 s."""

from __future__ import annotations

import torch

from pipeline.model import GPT
from pipeline.model.layers import rms_norm
from pipeline.quant.calibration import collect_hessians
from pipeline.report import training_budget
from tests.conftest import tiny_model_config


def test_hessians_are_the_mean_input_gram_matrix_of_each_linear_layer():
    torch.manual_seed(0)
    model = GPT(tiny_model_config())
    batches = [torch.randint(0, model.cfg.vocab_size, (2, 16)) for _ in range(3)]
    seen: dict[str, list[torch.Tensor]] = {"fc": [], "last": []}
    fc = model.blocks[0].mlp.fc
    hooks = [fc.register_forward_pre_hook(lambda m, a: seen["fc"].append(a[0].detach().float())),
             model.blocks[-1].register_forward_hook(lambda m, a, out: seen["last"].append(rms_norm(out).float()))]
    calib = collect_hessians(model, batches)
    for hook in hooks:
        hook.remove()
    assert calib.batches == 3 and calib.seconds > 0
    names = {n + ".weight" for n, m in model.named_modules() if type(m).__name__ == "CastedLinear"}
    assert names | {"tok_emb.weight"} == set(calib.hessians)
    for key, xs in (("blocks.0.mlp.fc.weight", seen["fc"]), ("tok_emb.weight", seen["last"])):
        expected = sum(x.reshape(-1, x.shape[-1]).T @ x.reshape(-1, x.shape[-1]) for x in xs) / 3
        assert torch.allclose(calib.hessians[key], expected, rtol=1e-5, atol=1e-5), key
    assert calib.hessians["blocks.0.mlp.fc.weight"].shape == (fc.in_features, fc.in_features)
    assert model.training  # put back as it was


def test_report_adds_calibration_to_training_seconds_only_when_calibrated():
    per_seed = {1: {"train_seconds": 590.0}, 2: {"train_seconds": 580.0}}
    assert training_budget(per_seed, {"1": 0.0, "2": 0.0}) == ""  # RTN: the record's table unchanged
    text = training_budget(per_seed, {"1": 12.5, "2": 9.0})
    assert "- seed 1: 590.0 s + 12.5 s = 602.5 s (OVER)" in text
    assert "- seed 2: 580.0 s + 9.0 s = 589.0 s (within)" in text
