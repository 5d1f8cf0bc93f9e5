#!/usr/bin/env bash
# One lent-GPU session: the record configuration's training step, its training memory
# (measured by the step, and worked out from the compiled graph), the attention kernels
# at the record's shapes, sliding-window evaluation throughput, the training step again
# with SDPA pinned to cuDNN's attention kernel (model.attention_backend: cudnn, the A/B
# for `auto`'s choice), the fused Triton kernels (model.fused_kernels) against the plain
# paths, and per-document attention at the frontier's packed row (FA3 varlen / compiled
# FlexAttention / per-segment SDPA).  Figures go under $OUT for docs/performance.md; each
# part has its own time limit, so a late overrun keeps what came before.  Runs from the
# repo root with the device image's python3 and torch; about 6-7 minutes on an H200, under
# 10 in the worst case.  Inductor's coordinate-descent tuning
# (TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 before the bench_train line) no longer fits
# in the same call; it is the next candidate for a later session.
set -u
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
run() {  # run NAME SECONDS CMD...: log to $OUT/NAME.log, hide the warnings on the console
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | grep -v Warning
}
run bench_train 140 python3 -m stages.cli bench --steps 20 --warmup 3 --out "$OUT/bench_train_record.json"
run bench_memory 75 python3 -m stages.cli bench --memory --out "$OUT/bench_memory_record.json"
run bench_attention 60 python3 benchmarks/bench_attention.py --record --out "$OUT/bench_attention_record.json"
run bench_eval 70 python3 -m stages.cli bench --eval --eval-tokens 131072 --out "$OUT/bench_eval_record.json"
python3 -c "import sys, yaml; p = yaml.safe_load(open('params.yaml')); p['model']['attention_backend'] = 'cudnn'
yaml.safe_dump(p, open(sys.argv[1], 'w'), sort_keys=False)" "$OUT/params_cudnn.yaml"
run bench_train_cudnn 160 python3 -m stages.cli bench --params "$OUT/params_cudnn.yaml" --steps 20 --warmup 3 \
  --out "$OUT/bench_train_record_cudnn.json"
# Limits sum to 590 s (under the 600 s a device command may run): bench_train and bench_eval
# measured 74 s and 41 s of compile on an H200 (docs/performance.md), so 140 and 70 leave room.
run bench_kernels 40 python3 benchmarks/bench_kernels.py --record --no-compile --iters 5 \
  --out "$OUT/bench_kernels_record.json"
# Last, new and unmeasured (one FlexAttention compile, forward and backward), so that in the
# worst case only this part is lost.
run bench_segments 45 python3 benchmarks/bench_segments.py --mask-tokens 0 --iters 5 \
  --out "$OUT/bench_segments_frontier.json"
