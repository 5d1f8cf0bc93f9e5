"""Size accounting: model + code bytes against the cap."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.errors import ArtifactError
from pipeline.quant.size import CodeFile, check_cap, size_report


def test_cap(quant_cfg):
    code = 1234
    fits = size_report(quant_cfg.cap_bytes - code, quant_cfg, code, [CodeFile("pipeline/__init__.py", 10)])
    assert fits.within_cap and fits.headroom_bytes == 0 and fits.total_bytes == quant_cfg.cap_bytes
    assert fits.code_bytes == code and fits.to_dict()["files"][0]["path"] == "pipeline/__init__.py"
    with pytest.raises(ArtifactError, match="allow_oversize"):
        size_report(quant_cfg.cap_bytes - code + 1, quant_cfg, code)
    lenient = dataclasses.replace(quant_cfg, allow_oversize=True)
    over = size_report(quant_cfg.cap_bytes - code + 1, lenient, code)
    assert not over.within_cap and over.headroom_bytes == -1


def test_deferred_check_reports_the_figures(quant_cfg):
    over = size_report(quant_cfg.cap_bytes, quant_cfg, 7, enforce=False)
    assert not over.within_cap and over.total_bytes == quant_cfg.cap_bytes + 7
    with pytest.raises(ArtifactError, match=f"{quant_cfg.cap_bytes:,} model \\+ 7 code = {quant_cfg.cap_bytes + 7:,} bytes"):
        check_cap(over, quant_cfg)
