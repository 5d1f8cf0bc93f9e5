#!/usr/bin/env bash
# One lent-GPU session: the record configuration's training step and sliding-window
# evaluation throughput (`pgolf bench`), figures written under $OUT for docs/performance.md.
# Runs from the repo root with the device image's own python3 and torch.
set -u
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
timeout "${TRAIN_TIMEOUT:-210}" python3 -m stages.cli bench --steps 20 --warmup 3 --out "$OUT/bench_train_record.json" \
  2>&1 | tee "$OUT/bench_train.log" | grep -v Warning
timeout "${EVAL_TIMEOUT:-100}" python3 -m stages.cli bench --eval --eval-tokens 131072 --out "$OUT/bench_eval_record.json" \
  2>&1 | tee "$OUT/bench_eval.log" | grep -v Warning
