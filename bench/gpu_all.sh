#!/usr/bin/env bash
# Every GPU figure of issue 17 in one script: run it on the GPU machine, from the checkout's root.
#
#   bench/gpu_all.sh --stage-data              # HERE, before: copy the real data into .gpudata/ (ignored)
#   bench/gpu_all.sh                           # on the GPU: all parts; figures in $OUT (or runs/gpu_all)
#   bench/gpu_all.sh --only throughput,share   # some parts (a device call is limited to 10 minutes)
#   bench/gpu_all.sh --smoke                   # anywhere, CPU ok: tiny models, few steps; tests the script
#
# Parts (each under its own time limit, each writing its JSON into the parts folder, so a part that
# fails or times out leaves the others' figures):
#   throughput   bench/gpu_throughput.py   one chain stage vs the Trainer, tokens/s and MFU
#   share        bench/gpu_share.py        1, 2, 4, 8 concurrent chain processes on one GPU
#   equivalence  bench/gpu_equivalence.py  CUDA fp32/bf16 vs CPU, stage cache bit-identical
#   search       itt search configs/gpu_search_xnli_local.yaml, >= 8 trials with gpus_per_worker 0.25,
#                with `nvidia-smi dmon` sampling GPU utilisation meanwhile
# then bench/gpu_collect.py merges them into gpu.json (issue 17's schema): into the parts folder, and
# into bench/data/gpu.json when not --smoke and not under $OUT (on the device only $OUT comes back:
# copy $OUT/gpu.json to bench/data/gpu.json there, or collect parts of several calls with
# `python bench/gpu_collect.py --parts DIR --out bench/data/gpu.json`).
#
# Options: --parts DIR (default: $OUT, else runs/gpu_all[_smoke]) --wheels DIR (default .whl: installed
# first with pip --no-index into /tmp/itt-site when it holds wheels; see scripts/pack_offline.py)
# --site DIR (default /tmp/itt-site; kept between calls) --install-only (install the wheels, run nothing)
# --data DIR (default .gpudata) --python PY (default python3) --part-timeout SECONDS (default 540; 1800 with --smoke).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SMOKE=0; STAGE=0; INSTALL_ONLY=0; SITE=/tmp/itt-site; ONLY="throughput,share,equivalence,search"
PARTS=""; WHEELS=.whl; DATA=.gpudata; PY=${PYTHON:-python3}; PART_TIMEOUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --stage-data) STAGE=1 ;;
    --install-only) INSTALL_ONLY=1 ;;
    --site) SITE=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --parts) PARTS=$2; shift ;;
    --wheels) WHEELS=$2; shift ;;
    --data) DATA=$2; shift ;;
    --python) PY=$2; shift ;;
    --part-timeout) PART_TIMEOUT=$2; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "gpu_all.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for p in ${ONLY//,/ }; do
  case "$p" in throughput|share|equivalence|search) ;; *) echo "gpu_all.sh: unknown part '$p'" >&2; exit 2 ;; esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

# ---------------------------------------------------------------- staging (on the machine with ../shared)
if [ $STAGE = 1 ]; then
  SRC=${SHARED_DATA:-$ROOT/../shared/data}
  [ -d "$SRC/xnli" ] || { echo "gpu_all.sh: no real data at $SRC" >&2; exit 2; }
  rm -rf "$DATA" && mkdir -p "$DATA/intermediate" "$DATA/tokenizers"
  cp -r "$SRC/xnli" "$DATA/"
  for t in mnli anli snli sst2; do cp -r "$SRC/intermediate/$t" "$DATA/intermediate/"; done
  cp -r "$SRC/tokenizers/bert-base-multilingual-cased" "$DATA/tokenizers/"
  chmod -R u+w "$DATA"
  echo "staged $(du -sh "$DATA" | cut -f1) of real data in $DATA (ignored by git; carry it to the device)"
  exit 0
fi

if [ -z "$PARTS" ]; then
  if [ -n "${OUT:-}" ]; then PARTS=$OUT; elif [ $SMOKE = 1 ]; then PARTS=runs/gpu_all_smoke; else PARTS=runs/gpu_all; fi
fi
mkdir -p "$PARTS"
PARTS=$(cd "$PARTS" && pwd)
# a smoke run on a busy CPU box needs minutes per part; on the GPU a device call has 600 s in all
[ -z "$PART_TIMEOUT" ] && { [ $SMOKE = 1 ] && PART_TIMEOUT=1800 || PART_TIMEOUT=540; }
# the search's experiment (stage cache: ~0.7 GB per XLM-R-base-sized encoder) stays out of $OUT, which
# travels back; its results.csv and summary.json are copied into the parts folder
if [ -n "${OUT:-}" ]; then SEARCH_STORE=/tmp/gpu_all_search; else SEARCH_STORE=$PARTS/search_runs; fi
LOG=$PARTS/gpu_all.log
say() { echo "[gpu_all $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

# ---------------------------------------------------------------- wheels (an offline node)
# wheels in $WHEELS or its parts ($WHEELS/1, $WHEELS/2: pack_offline.py --split-mib) go into $SITE, which
# keeps what earlier calls installed (a wheelhouse over a transfer limit arrives in several calls)
WHL=$(find "$WHEELS" -maxdepth 2 -name '*.whl' 2>/dev/null | sort)
if [ -n "$WHL" ]; then
  say "installing $(echo "$WHL" | wc -l) wheels from $WHEELS into $SITE"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" $WHL \
    2>&1 | tail -3 | tee -a "$LOG"
fi
[ -d "$SITE" ] && export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} PATH=$SITE/bin:$PATH
[ $INSTALL_ONLY = 1 ] && { say "installed into $SITE"; exit 0; }
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}   # this checkout's itt/ and search/ first (Ray workers inherit it)
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, CUDA: "
      f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
EOF
NEED="pydantic datasets transformers accelerate safetensors yaml"
want search && NEED="$NEED ray optuna mlflow"
MISSING=$("$PY" -c "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))" $NEED)
if [ -n "$MISSING" ]; then
  say "missing Python packages: $MISSING (carry the wheelhouse: scripts/pack_offline.py; its parts in one warm machine's calls)"
  exit 3
fi
HAVE_GPU=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$HAVE_GPU" != 1 ] && [ $SMOKE = 0 ]; then
  say "no CUDA device: run with --smoke to test the script on CPU"; exit 2
fi
SM=(); [ $SMOKE = 1 ] && SM=(--smoke)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"

run_part() {  # name, command...: a part under its time limit; its output in the log
  local name=$1; shift
  say "part $name: $*"
  local t0=$SECONDS
  timeout --kill-after=20 "$PART_TIMEOUT" "$@" 2>&1 | tee -a "$LOG" "$PARTS/$name.log" >/dev/null
  local rc=${PIPESTATUS[0]}
  say "part $name: rc $rc in $((SECONDS - t0)) s"
  return 0
}

if want throughput; then
  if [ $SMOKE = 1 ]; then A=(--smoke); else A=(--steps 150 --rounds 2 --warmup-steps 20); fi
  run_part throughput "$PY" bench/gpu_throughput.py "${A[@]}" --json "$PARTS/throughput.json"
fi
if want share; then
  if [ $SMOKE = 1 ]; then A=(--smoke); else A=(--procs 1 2 4 8 --steps 80 --warmup-steps 10); fi
  run_part share "$PY" bench/gpu_share.py "${A[@]}" --json "$PARTS/share.json"
fi
if want equivalence; then
  run_part equivalence "$PY" bench/gpu_equivalence.py --json "$PARTS/equivalence.json"
fi
if want search; then
  CFG=configs/gpu_search_xnli_local.yaml
  SET=()
  if [ -d "$DATA/xnli" ]; then
    D=$(cd "$DATA" && pwd)
    SET+=(--set "data_root=$D" --set "model.tokenizer=$D/tokenizers/bert-base-multilingual-cased")
  elif [ ! -d "$ROOT/../shared/data/xnli" ]; then
    say "part search: no data (run bench/gpu_all.sh --stage-data where ../shared/data is, and carry $DATA)"
  fi
  if [ $SMOKE = 1 ]; then
    SET+=(--set model.tiny.hidden_size=32 --set model.tiny.num_layers=1 --set model.tiny.num_heads=2
          --set model.tiny.intermediate_size=64 --set train.max_examples=32 --set train.batch_size=16
          --set train.max_length=32 --set finetune.max_examples=48 --set eval.max_examples=16
          --set eval.batch_size=64 --set "hardware.mixed_precision='no'" --set search.num_samples=8
          --set search.probe_steps=2 --set search.resources.gpus_per_worker=0
          --set search.resources.cpus_per_worker=1 --set search.resources.trial_cpus=0.25
          --set search.tracking.enabled=false)
  fi
  DMON_PID=""
  if [ "$HAVE_GPU" = 1 ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi dmon -s um -d 1 -o T > "$PARTS/dmon.txt" 2>&1 &
    DMON_PID=$!
  fi
  rm -rf "$SEARCH_STORE" "$PARTS/search"
  t0=$(date +%s.%N)
  run_part search "$PY" -m search.cli search "$CFG" --storage "$SEARCH_STORE" --progress plain \
    --tracking-uri "sqlite:///$PARTS/mlflow.db" "${SET[@]}"
  rc=$(grep -o "part search: rc [0-9]*" "$LOG" | tail -1 | grep -o "[0-9]*$")
  t1=$(date +%s.%N)
  [ -n "$DMON_PID" ] && kill "$DMON_PID" 2>/dev/null
  "$PY" - "$PARTS" "$SEARCH_STORE" "$t0" "$t1" "$rc" <<'EOF'
import json, shutil, sys
from pathlib import Path
parts, store, t0, t1, rc = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
exp = next((p.parent for p in sorted(store.glob("*/results.csv"))), None)
if exp is not None:  # the figures, without the stage cache and checkpoints
    (parts / "search").mkdir(exist_ok=True)
    for f in ("results.csv", "summary.json", "search.yaml"):
        if (exp / f).is_file():
            shutil.copy(exp / f, parts / "search" / f)
(parts / "search.json").write_text(json.dumps({"wall_s": t1 - t0, "rc": int(rc) if rc else None,
                                               "experiment": "search" if exp is not None else None}))
EOF
fi

say "collecting"
"$PY" bench/gpu_collect.py --parts "$PARTS" --out "$PARTS/gpu.json" "${SM[@]}" 2>&1 | tee -a "$LOG"
if [ $SMOKE = 0 ] && [ -z "${OUT:-}" ]; then cp "$PARTS/gpu.json" bench/data/gpu.json && say "wrote bench/data/gpu.json"; fi
say "done: $PARTS/gpu.json"
