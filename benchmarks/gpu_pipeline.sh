#!/usr/bin/env bash
# The whole pipeline once on a lent GPU (issue 20's end-to-end check): `dvc exp run -S
# profile=gpu_check` -- prepare the embedded corpus, train the record model 300 steps
# (compile, bf16 autocast, late QAT, SWA snapshots), swa, quantize, sliding-window evaluate,
# report -- then a pass/fail line per stage and the files for docs/measurements/ under $OUT.
#
#   benchmarks/gpu_pipeline.sh [dvc exp run arguments...]     e.g. -S train.iterations=200
#
# Runs from the repository root with the device image's python3. What it needs and the image
# lacks (dvc, dvclive, hydra, zstandard, brotli, ...) comes as wheels in .whl/
# (scripts/gpu-wheels, named in the device call's `carry`), installed into $PGOLF_SITE unless
# dvc imports already. The copy sent to the device has no .git, and `dvc exp run` needs a
# repository with a commit: one is made here when none is found (with git, or where the
# image has none with dulwich, one of dvc's dependencies, plus a stand-in `git` for the one
# `git add` the train stage runs; rehearsed end to end on a CPU in a copy without .git, with
# no git program and no git identity: docs/performance.md). The profile's train.launcher: torchrun makes the train and
# evaluate stages re-launch under torchrun at world size 1, with an NCCL process group and
# DDP (train_summary.json's `process_group` says which backend ran); a separate first step
# runs a bare all-reduce under torchrun, so a launcher or NCCL failure shows apart from the
# pipeline's. The run has its own time
# limit ($PGOLF_LIMIT s, default 420), so the outputs are collected even after an overrun.
# Environment: OUT (default /tmp/out), PGOLF_PYTHON (python3), PGOLF_SITE (/tmp/site),
# PGOLF_WHEELS (.whl), PGOLF_LIMIT (420), PGOLF_SEED (1337: the profile's seed).
# $OUT receives (the device tool brings back at most 8 files): gpu_pipeline.log (everything
# printed), gpu_pipeline_summary.json (per-stage status and the figures), env.txt,
# gpu_pipeline.tar.gz (dvc.lock, params.yaml, metrics/, the seed's dvclive/, train_summary.json,
# size.json, data/manifest.json, dvc metrics show), loss.png where matplotlib imports.
set -u -o pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
PY="${PGOLF_PYTHON:-python3}"
SITE="${PGOLF_SITE:-/tmp/site}"
WHEELS="${PGOLF_WHEELS:-.whl}"
LIMIT="${PGOLF_LIMIT:-420}"
SEED="${PGOLF_SEED:-1337}"
export PYTHONUNBUFFERED=1 DVC_NO_ANALYTICS=1
exec 3>&1 > >(tee "$OUT/gpu_pipeline.log") 2>&1
TEE_PID=$!
# On exit, let tee write the last lines to $OUT before the device tool collects it.
finish() { local rc=$?; exec 1>&3 2>&3; wait "$TEE_PID" 2>/dev/null; exit "$rc"; }
trap finish EXIT
T0=$SECONDS
mark() { printf '\n=== [gpu_pipeline %4ds] %s\n' $((SECONDS - T0)) "$*"; }
fail() { mark "FAIL: $*"; exit 1; }

mark "environment"
{
  date -u +%FT%TZ
  uname -srm
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    || echo "nvidia-smi: absent"
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0]); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
  "$PY" -c "import triton; print('triton', triton.__version__)" 2>/dev/null || echo "triton: absent"
  git --version 2>/dev/null || echo "git: absent"
} | tee "$OUT/env.txt"

mark "wheels"
if "$PY" -c "import dvc, dvclive, hydra, zstandard" 2>/dev/null; then
  echo "dvc, dvclive, hydra and zstandard import already: nothing to install"
else
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || fail "dvc is not installed and $WHEELS/ holds no wheels (scripts/gpu-wheels; name .whl in carry)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
    || fail "pip could not install $WHEELS/*.whl into $SITE"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  echo "$(ls "$WHEELS"/*.whl | wc -l) wheels installed into $SITE"
  "$PY" -m pip check 2>&1 | grep -iE "dvc|hydra|omegaconf|scmrepo|zstandard|brotli|pgolf" \
    && echo "(pip check: unmet requirements above, printed for the record)" || echo "pip check: nothing unmet for dvc's tree"
fi
# pgolf's stages run as `pgolf <stage>` (dvc.yaml): a launcher on PATH when pgolf is not installed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v pgolf >/dev/null; then
  mkdir -p "$SITE/bin"
  printf '#!/bin/sh\nexec %s -m stages.cli "$@"\n' "$(command -v "$PY")" >"$SITE/bin/pgolf"
  chmod +x "$SITE/bin/pgolf"
  export PATH="$SITE/bin:$PATH"
fi
"$PY" -m dvc --version | sed 's/^/dvc /' | tee -a "$OUT/env.txt" || fail "dvc does not start"
pgolf --help >/dev/null || fail "pgolf does not start"

mark "git"
ident=(-c user.name=pgolf -c user.email=pgolf@localhost)
if git rev-parse --verify -q HEAD >/dev/null 2>&1 && [ "$(git rev-parse --show-toplevel)" = "$PWD" ]; then
  echo "a repository with a commit is here: $(git rev-parse --short HEAD)"
elif command -v git >/dev/null; then
  [ -f .git ] && rm .git  # a worktree's pointer to a git directory left behind on another machine
  git init -q . && git add -A && git "${ident[@]}" commit -qm "gpu_pipeline snapshot" \
    || fail "could not make a git commit of the working tree"
  echo "made a repository: $(git ls-files | wc -l) files, commit $(git rev-parse --short HEAD)"
else
  # No git binary: dulwich (one of dvc's own dependencies) makes the repository; dvc exp run
  # works on it without git (tried on a CPU with git hidden).
  [ -f .git ] && rm .git
  "$PY" - <<'PYEOF' || fail "no git, and dulwich could not make a commit of the working tree"
from dulwich import porcelain
from dulwich.repo import Repo
repo = porcelain.init(".") if not __import__("os").path.isdir(".git") else Repo(".")
config = repo.get_config()
config.set((b"user",), b"name", b"pgolf")
config.set((b"user",), b"email", b"pgolf@localhost")
config.write_to_path()
porcelain.add(repo)
porcelain.commit(repo, message=b"gpu_pipeline snapshot", author=b"pgolf <pgolf@localhost>",
                 committer=b"pgolf <pgolf@localhost>")
print(f"no git binary: made a repository with dulwich, {len(list(repo.open_index()))} files,"
      f" commit {repo.head().decode()[:7]}")
PYEOF
  # pgolf's train stage runs `git add -- runs/seed_N/dvclive/dvc.yaml` (pipeline/train/curves.py)
  # so that the experiment's commit holds the curves' dvc.yaml; without git it only warns and the
  # file is left out. A stand-in does that one thing through dulwich, and answers anything else
  # (GitPython's `git version` probe, provenance's `git rev-parse` included) as if git were broken.
  mkdir -p "$SITE/bin"
  cat >"$SITE/bin/git" <<PYEOF
#!$(command -v "$PY")
"""git stand-in (benchmarks/gpu_pipeline.sh): \`git add -- FILE...\` through dulwich, nothing else."""
import os, sys
args = sys.argv[1:]
if args[:1] != ["add"]:
    sys.exit(f"git stand-in: only 'add' is provided, not {args[:1]}")
from dulwich import porcelain
from dulwich.repo import Repo
repo = Repo.discover(os.getcwd())
porcelain.add(repo, paths=[os.path.abspath(a) for a in args[1:] if a != "--"])
PYEOF
  chmod +x "$SITE/bin/git"
  export PATH="$SITE/bin:$PATH"
fi
if command -v git >/dev/null && git --version >/dev/null 2>&1; then  # dvc commits the experiment: an identity, where none is configured
  git config user.name >/dev/null || git config user.name pgolf
  git config user.email >/dev/null || git config user.email pgolf@localhost
fi

mark "torchrun at world size 1: process group $("$PY" -c 'import torch; print("nccl" if torch.cuda.is_available() else "gloo")')"
# The launcher and the backend on this machine by themselves, before the pipeline uses them
# (train.launcher: torchrun in the gpu_check profile).
cat >/tmp/gpu_pipeline_dist.py <<'PYEOF'
import os, torch, torch.distributed as dist
cuda = torch.cuda.is_available()
if cuda:
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl" if cuda else "gloo")
x = torch.full((4,), 2.0, device="cuda" if cuda else "cpu")
dist.all_reduce(x)
dist.barrier()
print(f"rank {dist.get_rank()} of {dist.get_world_size()}, backend {dist.get_backend()}, all_reduce {x.tolist()}",
      f"nccl {'.'.join(map(str, torch.cuda.nccl.version()))}" if cuda else "")
dist.destroy_process_group()
PYEOF
timeout -k 5 90 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 /tmp/gpu_pipeline_dist.py 2>&1 \
  | tee -a "$OUT/env.txt" || echo "torchrun check failed (status ${PIPESTATUS[0]})" | tee -a "$OUT/env.txt"

mark "dvc exp run -S profile=gpu_check $* (limit ${LIMIT} s)"
timeout -k 20 "$LIMIT" "$PY" -m dvc exp run -S profile=gpu_check "$@" 2>&1 \
  | while IFS= read -r line; do printf '%(%s)T %s\n' -1 "$line"; done | tee /tmp/gpu_pipeline_dvc.log \
  | while IFS= read -r line; do printf '%(%T)T %s\n' "${line%% *}" "${line#* }"; done
status=${PIPESTATUS[0]}
mark "dvc exp run exit status $status$([ "$status" = 124 ] && echo ' (time limit)')"

mark "stages"
"$PY" - "$SEED" "$status" "$OUT/gpu_pipeline_summary.json" /tmp/gpu_pipeline_dvc.log <<'EOF'
"""One line per stage (PASS/FAIL and its figures) and the summary JSON."""
import json, math, sys, yaml
from pathlib import Path

seed, status, out, dvc_log = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
params = yaml.safe_load(open("params.yaml"))
data, runs = Path(params["data"]["out_dir"]), Path(params["train"]["out_dir"])
run = runs / f"seed_{seed}"

def read(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None

def finite(*values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)

stages, figures = {}, {"dvc_exp_run_status": status}
manifest = read(data / "manifest.json")
stages["prepare"] = manifest is not None
if manifest:
    figures["data"] = {name: {k: split.get(k) for k in ("documents", "tokens")}
                       for name, split in manifest.get("splits", {}).items()}
train = read(run / "train_summary.json")
stages["train"] = bool(train) and finite(train.get("final_train_loss"))
if train:
    figures["train"] = {k: v for k, v in train.items() if not isinstance(v, (dict, list)) or k in (
        "snapshot_steps", "val", "qat_step")}
stages["swa"] = (run / "averaged.pt").is_file()
size = read(run / "size.json")
stages["quantize"] = bool(size)
figures["size"] = size
scores = read(Path("metrics/seeds") / f"seed_{seed}.json")
stages["evaluate"] = bool(scores) and all(finite(v) for v in scores.values() if isinstance(v, float))
figures["evaluate"] = scores
summary = read("metrics/summary.json")
stages["report"] = summary is not None
figures["report"] = summary
# Seconds per DVC stage, from the epoch stamps put on dvc's output lines ("Running stage 'x':").
seconds, current, start, last = {}, None, None, None
for line in dvc_log.read_text(errors="replace").splitlines():
    stamp, _, text = line.partition(" ")
    if not stamp.isdigit():
        continue
    last = int(stamp)
    if text.startswith("Running stage '"):
        if current:
            seconds[current] = last - start
        current, start = text.split("'")[1], last
if current:
    seconds[current] = last - start
figures["stage_seconds"] = seconds
for name, ok in stages.items():
    took = [f"{k} {v} s" for k, v in seconds.items() if k.split("@")[0] == name]
    if name == "train" and train:  # which code path ran: gloo/nccl under torchrun, or none
        took.append(f"process group {train.get('process_group')}, world size {train.get('world_size')}")
    print(f"{'PASS' if ok else 'FAIL'}  {name:9s} {', '.join(took)}")
# The loss curve as the train stage logged it (dvclive's tsv files).
curves = {}
for tsv in sorted((run / "dvclive" / "plots" / "metrics").rglob("*.tsv")):
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
    curves[str(tsv.relative_to(run / "dvclive" / "plots" / "metrics").with_suffix(""))] = [
        (int(r[0]), float(r[-1])) for r in rows if len(r) >= 2]
for name in ("train/loss", "train/train_loss", "val/val_loss", "val/loss", "val/bpb", "val/val_bpb"):
    if name in curves and curves[name]:
        pts = curves[name]
        print(f"{name}: step {pts[0][0]} {pts[0][1]:.4f} -> step {pts[-1][0]} {pts[-1][1]:.4f} ({len(pts)} points)")
figures["curves"] = curves
result = {"stages": stages, "passed": all(stages.values()) and status == 0, **figures}
out.write_text(json.dumps(result, indent=1, default=str) + "\n")
print("ALL STAGES PASSED" if result["passed"] else "NOT ALL STAGES PASSED")
EOF

mark "files for docs/measurements/"
"$PY" -m dvc metrics show >"$OUT/dvc_metrics_show.txt" 2>&1 || true
"$PY" - "$SEED" "$OUT/loss.png" <<'EOF' || echo "no loss.png (matplotlib absent or no curve)"
import sys
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
base = Path(f"runs/seed_{sys.argv[1]}/dvclive/plots/metrics")
fig, ax = plt.subplots(figsize=(7, 4))
for tsv in sorted(base.rglob("*loss*.tsv")):
    rows = [l.split("\t") for l in tsv.read_text().splitlines()[1:]]
    ax.plot([int(r[0]) for r in rows], [float(r[-1]) for r in rows], label=str(tsv.relative_to(base).with_suffix("")))
ax.set_xlabel("step"); ax.set_ylabel("loss (nats)"); ax.legend(); ax.set_title("profile gpu_check")
fig.savefig(sys.argv[2], dpi=100, bbox_inches="tight")
print("wrote", sys.argv[2])
EOF
files=(dvc.lock params.yaml metrics data/manifest.json "runs/seed_$SEED/dvclive" "runs/seed_$SEED/train_summary.json"
       "runs/seed_$SEED/size.json")
present=(); for f in "${files[@]}"; do [ -e "$f" ] && present+=("$f"); done
tar -czf "$OUT/gpu_pipeline.tar.gz" "${present[@]}" -C "$OUT" env.txt dvc_metrics_show.txt && rm "$OUT/dvc_metrics_show.txt"
ls -l "$OUT"
mark "done"
[ "$status" = 0 ] && "$PY" -c "import json,sys; sys.exit(0 if json.load(open('$OUT/gpu_pipeline_summary.json'))['passed'] else 1)"
