#!/usr/bin/env bash
# Every GPU figure of issue 17 in one script: run it on the GPU machine, from the checkout's root.
#
#   bench/gpu_all.sh --prepare                 # HERE (../shared and a package index): .devcarry/ holds
#                                              # data.tar.xz and wheels.tar.xz, ~50 MiB: carry it
#   bench/gpu_all.sh --carry .devcarry --budget 560    # on the GPU, ONE call: unpack, install, all parts
#   bench/gpu_all.sh --only throughput,share   # some parts
#   bench/gpu_all.sh --smoke                   # anywhere, CPU ok: tiny models, few steps; tests the script
#
# Parts (each under its own time limit, each writing its JSON into the parts folder, so a part that
# fails or times out leaves the others' figures):
#   throughput   bench/gpu_throughput.py   one chain stage vs the Trainer, tokens/s and MFU, then a
#                                          20-step torch.profiler run of each side (GPU busy share, syncs)
#   share        bench/gpu_share.py        1, 2, 4, 8 concurrent chain processes on one GPU (each capped at
#                                          1/N of its memory), then one capped below its stage's peak
#                                          (it must go on in micro-batches: the out-of-memory check)
#   equivalence  bench/gpu_equivalence.py  CUDA fp32/bf16 vs CPU, stage cache bit-identical, and whether
#                                          hardware.deterministic repeats a CUDA chain exactly
#   search       itt search configs/gpu_search_xnli_local.yaml, >= 8 trials with gpus_per_worker 0.25,
#                with `nvidia-smi dmon` sampling GPU utilisation meanwhile
# then bench/gpu_collect.py merges them into gpu.json (issue 17's schema): into the parts folder, and
# into bench/data/gpu.json when not --smoke and not under $OUT. Under $OUT (the device machine, where
# at most 8 files come back) the parts are kept in /tmp and, after every part, $OUT gets three files:
# gpu.json, gpu_all.log and details.tar.gz (every part's JSON and log, the search's results.csv, its
# `itt space --from` hours (search/space.txt) and
# summary.json, dmon.txt); a call cut off at its limit still returns the parts done so far. Back here:
# `python bench/gpu_collect.py --parts DIR [DIR ...] --out bench/data/gpu.json` (DIRs of several calls).
#
# Options: --parts DIR (default: /tmp/gpu_all_parts under $OUT, else runs/gpu_all[_smoke])
# --carry DIR (data.tar.xz unpacked into --data when that is absent; wheels.tar.xz installed into --site)
# --wheels DIR (default .whl: wheels or parts DIR/1, DIR/2 installed first into --site)
# --site DIR (default /tmp/itt-site; kept between calls) --install-only (install, run nothing)
# --data DIR (default .gpudata) --python PY (default python3)
# --part-timeout SECONDS (default 540; 1800 with --smoke) --budget SECONDS (all parts together: each part
# gets at most its share of it (throughput 18%, share 30%, equivalence 10%, search the rest) and what the
# parts before it left unused; a part with under 20 s left is skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SMOKE=0; STAGE=0; PREPARE=0; INSTALL_ONLY=0; CARRY=""; BUDGET=""; SITE=/tmp/itt-site; ONLY="throughput,share,equivalence,search"
PARTS=""; WHEELS=.whl; DATA=.gpudata; PY=${PYTHON:-python3}; PART_TIMEOUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --stage-data) STAGE=1 ;;
    --install-only) INSTALL_ONLY=1 ;;
    --prepare) PREPARE=1 ;;
    --carry) CARRY=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --site) SITE=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --parts) PARTS=$2; shift ;;
    --wheels) WHEELS=$2; shift ;;
    --data) DATA=$2; shift ;;
    --python) PY=$2; shift ;;
    --part-timeout) PART_TIMEOUT=$2; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "gpu_all.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for p in ${ONLY//,/ }; do
  case "$p" in throughput|share|equivalence|search) ;; *) echo "gpu_all.sh: unknown part '$p'" >&2; exit 2 ;; esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }
if [ -n "$BUDGET" ] && ! [[ "$BUDGET" =~ ^[0-9]+$ ]]; then
  echo "gpu_all.sh: --budget takes whole seconds, not '$BUDGET'" >&2; exit 2
fi
if [ -n "$CARRY" ] && [ ! -d "$CARRY" ]; then
  echo "gpu_all.sh: --carry $CARRY: no such folder (bench/gpu_all.sh --prepare makes it)" >&2; exit 2
fi

# ---------------------------------------------------------------- staging (on the machine with ../shared)
stage_data() {  # the real data the search reads -> $DATA
  local src=${SHARED_DATA:-$ROOT/../shared/data}
  [ -d "$src/xnli" ] || { echo "gpu_all.sh: no real data at $src" >&2; exit 2; }
  rm -rf "$DATA" && mkdir -p "$DATA/intermediate" "$DATA/tokenizers"
  cp -r "$src/xnli" "$DATA/"
  for t in mnli anli snli sst2; do cp -r "$src/intermediate/$t" "$DATA/intermediate/"; done
  cp -r "$src/tokenizers/bert-base-multilingual-cased" "$DATA/tokenizers/"
  chmod -R u+w "$DATA"
  echo "staged $(du -sh "$DATA" | cut -f1) of real data in $DATA (ignored by git; carry it to the device)"
}
if [ $STAGE = 1 ]; then stage_data; exit 0; fi
if [ $PREPARE = 1 ]; then  # everything one device call needs, in one ignored folder, under 64 MiB with the checkout
  DEST=${CARRY:-.devcarry}
  mkdir -p "$DEST" && stage_data
  "$PY" -c "import sys, tarfile; t = tarfile.open(sys.argv[1], 'w:xz', preset=9); t.add(sys.argv[2], arcname='.'); t.close()" \
    "$DEST/data.tar.xz" "$DATA" || exit 1
  "$PY" scripts/pack_offline.py --dest "$WHEELS" --bundle "$DEST/wheels.tar.xz" || exit 1
  TREE=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  CARRIED=$(du -cb "$DEST"/*.tar.xz | tail -1 | cut -f1)
  echo "prepared $DEST: $(du -sh "$DEST" | cut -f1); with the checkout $(( (TREE + CARRIED) / 1048576 )) MiB of the 64 a device call takes"
  echo "device call: carry [\"$DEST\"], command: bench/gpu_all.sh --carry $DEST --budget 560 (timeout_s 600)"
  exit 0
fi

if [ -z "$PARTS" ]; then
  if [ -n "${OUT:-}" ]; then PARTS=/tmp/gpu_all_parts; rm -rf "$PARTS"; elif [ $SMOKE = 1 ]; then PARTS=runs/gpu_all_smoke; else PARTS=runs/gpu_all; fi
fi
mkdir -p "$PARTS"
PARTS=$(cd "$PARTS" && pwd)
PUBLISH=""  # the folder that travels back (the device's $OUT): three files, refreshed after every part
[ -n "${OUT:-}" ] && [ "$(cd "$OUT" 2>/dev/null && pwd)" != "$PARTS" ] && PUBLISH=$OUT
# a smoke run on a busy CPU box needs minutes per part; on the GPU a device call has 600 s in all
[ -z "$PART_TIMEOUT" ] && { [ $SMOKE = 1 ] && PART_TIMEOUT=1800 || PART_TIMEOUT=540; }
# the search's experiment (stage cache: ~0.7 GB per XLM-R-base-sized encoder) stays out of $OUT, which
# travels back; its results.csv and summary.json are copied into the parts folder
if [ -n "${OUT:-}" ]; then SEARCH_STORE=/tmp/gpu_all_search; else SEARCH_STORE=$PARTS/search_runs; fi
LOG=$PARTS/gpu_all.log
say() { echo "[gpu_all $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }
# whatever ends the script (a missing package, no CUDA), the log travels back
trap '[ -n "$PUBLISH" ] && cp "$LOG" "$PUBLISH/" 2>/dev/null' EXIT
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

# ---------------------------------------------------------------- carried data and wheels (an offline node)
unpack() {  # archive, folder (Python's tarfile: the node may lack xz)
  say "unpacking $1 into $2"
  mkdir -p "$2" && "$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
    "$1" "$2" || { say "could not unpack $1"; exit 1; }
}
if [ -n "$CARRY" ] && [ -f "$CARRY/data.tar.xz" ] && [ ! -d "$DATA/xnli" ]; then unpack "$CARRY/data.tar.xz" "$DATA"; fi
WHL_DIRS=("$WHEELS")
if [ -n "$CARRY" ] && [ -f "$CARRY/wheels.tar.xz" ]; then
  UNPACKED=$(mktemp -d /tmp/itt-wheels.XXXXXX)
  unpack "$CARRY/wheels.tar.xz" "$UNPACKED"
  WHL_DIRS=("$UNPACKED")
fi
# wheels in $WHEELS or its parts ($WHEELS/1, $WHEELS/2: pack_offline.py --split-mib) go into $SITE, which
# keeps what earlier calls installed (a wheelhouse over a transfer limit arrives in several calls)
WHL=$(find "${WHL_DIRS[@]}" -maxdepth 2 -name '*.whl' 2>/dev/null | sort)
if [ -n "$WHL" ]; then
  say "installing $(echo "$WHL" | wc -l) wheels from ${WHL_DIRS[*]} into $SITE"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" $WHL \
    2>&1 | tail -3 | tee -a "$LOG"
  [ -n "${UNPACKED:-}" ] && rm -rf "$UNPACKED"
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

START=$SECONDS
publish() {  # under $OUT: gpu.json, the log and one archive of the rest (a device call returns 8 files at most)
  [ -z "$PUBLISH" ] && return 0
  [ "${1:-}" = collected ] || "$PY" bench/gpu_collect.py --parts "$PARTS" --out "$PARTS/gpu.json" --quiet "${SM[@]}" >/dev/null 2>&1
  cp "$PARTS/gpu.json" "$LOG" "$PUBLISH/" 2>/dev/null
  tar -czf "$PUBLISH/details.tar.gz.part" -C "$PARTS" --exclude=gpu.json . 2>/dev/null \
    && mv "$PUBLISH/details.tar.gz.part" "$PUBLISH/details.tar.gz"
}
declare -A SHARE_OF=([throughput]=18 [share]=30 [equivalence]=10 [search]=42)
part_limit() {  # seconds part $1 may run: --part-timeout, and under --budget its share and what is left
  local limit=$PART_TIMEOUT
  if [ -n "$BUDGET" ]; then
    local left=$((BUDGET - (SECONDS - START) - 10)) share=$((BUDGET * SHARE_OF[$1] / 100))
    # the parts still to come keep their shares; a part gets its own plus what earlier parts left
    local later=0 p
    for p in $REST; do later=$((later + BUDGET * SHARE_OF[$p] / 100)); done
    if [ "$1" = search ]; then share=$left; elif [ $((left - later)) -gt "$share" ]; then share=$((left - later)); fi
    limit=$((share < limit ? share : limit)); limit=$((left < limit ? left : limit))
  fi
  echo "$limit"
}
run_part() {  # name, command...: a part under its time limit; its output in the log
  local name=$1; shift
  REST=${REST# }; REST=${REST#"$name"}; REST=${REST# }
  local limit; limit=$(part_limit "$name")
  if [ "$limit" -lt 20 ]; then say "part $name: skipped (${limit} s of the --budget left)"; return 0; fi
  say "part $name (at most $limit s): $*"
  local t0=$SECONDS
  # SIGINT first: a search stops its trials and writes its results like a Ctrl-C; SIGKILL 20 s later
  timeout -s INT --kill-after=20 "$limit" "$@" 2>&1 | tee -a "$LOG" "$PARTS/$name.log" >/dev/null
  local rc=${PIPESTATUS[0]}
  say "part $name: rc $rc in $((SECONDS - t0)) s"
  publish
  return 0
}
REST=""; for p in throughput share equivalence search; do want $p && REST="$REST $p"; done

if want throughput; then
  if [ $SMOKE = 1 ]; then A=(--smoke --profile 2); else A=(--steps 150 --rounds 2 --warmup-steps 20 --profile 20); fi
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
  # the search as a pilot: `itt space --from` prints its per-stage seconds on this GPU and the hours of the
  # full space at them (search/space.txt in details.tar.gz); a failure here costs nothing else
  EXP=$(dirname "$(ls "$SEARCH_STORE"/*/results.csv 2>/dev/null | head -1)" 2>/dev/null)
  if [ -d "$PARTS/search" ] && [ -f "$EXP/results.csv" ]; then
    "$PY" -m search.cli space "$CFG" "${SET[@]}" --samples 0 --from "$EXP" > "$PARTS/search/space.txt" 2>&1 || true
  fi
fi

say "collecting"
"$PY" bench/gpu_collect.py --parts "$PARTS" --out "$PARTS/gpu.json" "${SM[@]}" 2>&1 | tee -a "$LOG"
if [ $SMOKE = 0 ] && [ -z "${OUT:-}" ]; then cp "$PARTS/gpu.json" bench/data/gpu.json && say "wrote bench/data/gpu.json"; fi
say "done: $PARTS/gpu.json${PUBLISH:+ (and $PUBLISH: gpu.json, gpu_all.log, details.tar.gz)}"
publish collected
