"""pgolf: the Parameter Golf record recipe as a library.

Subpackages hold one concern each: `data` (corpus, tokenizer, shards, loaders),
`model` (the GPT of SPEC §2), `optim` (Muon, AdamW groups, schedules), `train`
(the loop, distributed setup, QAT, SWA/EMA, checkpoints), `quant` (int6/int8,
artifact format), `evaluate` (bits per byte, sliding window) and `report`
(multi-seed summary).  The CLI lives in the separate `stages` package.
"""

__version__ = "0.1.0"
