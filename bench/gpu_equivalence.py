"""The same numbers on GPU as on CPU: a tiny chain on CUDA (fp32, bf16) against the same chain on CPU,
and the stage cache's encoders bit-identical after a round trip on the device.

A tiny BERT chain on the generated toy benchmark (two intermediate stages, a target fine-tune, zero-shot
eval in four toy languages; data prepared once, so every run sees the same tokens) runs like for like
on both devices: the same sampler (no length grouping, a GPU-only default), the same unfused AdamW, no
dropout (CUDA and CPU draw different masks from the same seed), deterministic CUDA algorithms where
torch has them (``hardware.deterministic: true``). It trains long enough that the reference predicts
every class (checked), so that a flipped prediction shows:

* ``cpu`` twice: the reference, and a repeat that must match it EXACTLY (CPU training is deterministic);
* ``cuda-fp32`` (TF32 off): final logits within ``FP32_TOL`` of the CPU run, and at most that many
  test predictions per language different from the CPU run's;
* ``cuda-bf16`` (autocast): within the looser ``BF16_TOL``;
* ``cuda-fp32`` again: whether ``hardware.deterministic: true`` makes it repeat the first EXACTLY
  (informational, ``cuda_repeat``: kernels without a deterministic form may make it differ).

Logits are those of each run's final checkpoint (encoder + target head) on every test example, all
computed on CPU in fp32, so the difference is what training on another device changed, not the
device the comparison ran on. The cache part, on the best device at hand: an encoder put into an
``itt.cache.StageCache`` and loaded back onto the device is bit-identical (every tensor
``torch.equal``), and the chain run a second time with the same cache takes its stages from it and
gives the same logits (exactly on CPU; on CUDA within ``FP32_TOL``, since the target fine-tune is
trained again and some CUDA kernels, e.g. memory-efficient attention's backward, have no
deterministic form). On a machine without CUDA the CUDA runs are skipped (said so).

    python bench/gpu_equivalence.py --json runs/bench/equivalence.json
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _outputs import write_json  # (bench/ is on the path when a script runs)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (set before CUDA starts)

# Tolerances against the CPU run: max abs diff of the final logits, and test predictions (argmax) that
# may differ per language. fp32 kernels differ in summation order only: logits move by ~1e-5 per step
# at most here; an example near the boundary may flip, so one per language is allowed. bf16 rounds
# activations to 8 bits of mantissa.
FP32_TOL = {"logits": 1e-3, "metric_examples": 1}
BF16_TOL = {"logits": 0.25, "metric_examples": 4}

TASKS = ["toy_topic", "toy_length"]
N_EVAL = 48


def chain_raw(steps: int) -> dict:
    """A tiny chain: small enough for a CPU test, trained enough that the reference predicts every class.
    Like for like on both devices: no dropout, no length grouping, the unfused optimizer."""
    return {
        "name": "equivalence",
        "model": {"tiny": {"arch": "bert", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
                           "dropout": 0.0},
                  "train_tokenizer": {"vocab_size": 400}},
        "order": TASKS,
        "target": {"task": "toy_xnli"},
        "train": {"lr": 3e-3, "batch_size": 16, "max_steps": steps, "max_length": 24},
        "finetune": {"max_steps": 4 * steps, "lr": 5e-3},
        "eval": {"batch_size": 64, "splits": ["test"]},
        "toy": {"n_train": 96, "n_eval": N_EVAL},
        "seeds": [0],
        "save_checkpoint": True,
        # deterministic: the option a user sets (kernels where torch has them, warn_only; cuBLAS's fixed
        # workspace; no cuDNN autotuning); CPU's numbers are the same with it or without
        "hardware": {"group_by_length": False, "fused_optimizer": False, "deterministic": True},
    }


def _leaves(obj, prefix=""):
    """Numeric leaves of a nested results dict, keyed by path (NaN/None/strings skipped)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and math.isfinite(obj):
        yield prefix, float(obj)


def _accuracies(res: dict) -> dict:
    return {k: v for k, v in _leaves(res["seeds"]["0"]["test"]) if k.startswith("per_language.") and k.endswith(".accuracy")}


def metric_diff(a: dict, b: dict) -> tuple[float, str]:
    """Max abs diff of the per-language test accuracies of seed 0; and where (1 / N_EVAL per flipped example)."""
    la, lb = _accuracies(a), _accuracies(b)
    assert la.keys() == lb.keys(), (sorted(la), sorted(lb))
    key = max(la, key=lambda k: abs(la[k] - lb[k]))
    return abs(la[key] - lb[key]), key


def final_logits(p, ckpt: Path) -> dict:
    """Logits of a checkpoint (encoder + target head) on every test example, on CPU in fp32, per language."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel

    from itt.models import TaskModel
    from itt.train import new_head

    enc = AutoModel.from_pretrained(ckpt, attn_implementation="eager").float().eval()
    head = new_head(enc.config.hidden_size, p.target, 0)
    head.load_state_dict(load_file(str(ckpt / "head.safetensors")))
    model = TaskModel(enc, head, "first", p.target.is_regression).eval()
    out = {}
    with torch.no_grad():
        for (split, lang), ds in sorted(p.eval_tok.items()):
            if split != "test":
                continue
            cols = [c for c in ds.column_names if c in ("input_ids", "attention_mask", "token_type_ids")]
            batch = p.tokenizer.pad({c: ds[c] for c in cols}, return_tensors="pt")
            out[lang] = model(**batch).reshape(len(ds), -1)
    return out


def logit_diff(la: dict, lb: dict) -> tuple[float, int]:
    """Max abs logit diff, and the most test predictions (argmax) that differ in one language."""
    dl = max(float((la[k] - lb[k]).abs().max()) for k in la)
    flips = max(int((la[k].argmax(-1) != lb[k].argmax(-1)).sum()) for k in la)
    return dl, flips


def predicted_classes(logits: dict) -> int:
    """How many classes the model predicts on the test examples (all languages together)."""
    import torch

    return int(torch.cat([v.argmax(-1) for v in logits.values()]).unique().numel())


def run(cfg, p, device: str, mixed: str, out: Path, cache=None) -> dict:
    import torch
    from accelerate.state import AcceleratorState

    from itt.chain import run_chain

    # Accelerate keeps one process-wide state: without a reset, the first run's device and precision
    # would silently stay for every later Accelerator (a "cuda" run would train on the CPU)
    AcceleratorState._reset_state(reset_partial_state=True)
    c = cfg.model_copy(update={"hardware": cfg.hardware.model_copy(update={"device": device, "mixed_precision": mixed})})
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = run_chain(c, prepared=replace(p, cfg=c), out_dir=out, log=lambda *a: None, cache=cache)
    res["_seconds"] = time.perf_counter() - t0
    if device == "cuda" and torch.cuda.max_memory_allocated() == 0:
        raise RuntimeError("the 'cuda' run allocated nothing on the GPU: it did not run there")
    return res


def compare(name: str, ref: dict, ref_dir: Path, other: dict, other_dir: Path, p, tol: dict | None) -> dict:
    """Diffs of ``other`` against ``ref``; ``tol`` None = must be exactly equal."""
    dm, where = metric_diff(ref, other)
    la, lb = final_logits(p, ref_dir / "seed0" / "checkpoint"), final_logits(p, other_dir / "seed0" / "checkpoint")
    dl, flips = logit_diff(la, lb)
    if tol is None:
        ok = dm == 0.0 and dl == 0.0
        limit = "exactly equal"
    else:
        ok = flips <= tol["metric_examples"] and dm <= tol["metric_examples"] / N_EVAL + 1e-12 and dl <= tol["logits"]
        limit = f"logits <= {tol['logits']:g}, predictions <= {tol['metric_examples']}/{N_EVAL} a language"
    print(f"  {name:22} max |d logit| {dl:.3e}  predictions differing {flips}/{N_EVAL}  max |d accuracy| {dm:.4f} "
          f"({where})  [{limit}] {'ok' if ok else 'OUT OF TOLERANCE'}", flush=True)
    return {"max_abs_diff_metrics": dm, "worst_metric": where, "max_abs_diff_logits": dl,
            "max_predictions_differing": flips, "tolerance": tol, "ok": ok, "seconds": other["_seconds"]}


def cache_round_trip(p, ref_dir: Path, device: str, tmp: Path) -> dict:
    """Put the final encoder into a StageCache, load it onto ``device``: every tensor bit-identical."""
    import torch
    from transformers import AutoModel

    from itt.cache import StageCache

    enc = AutoModel.from_pretrained(ref_dir / "seed0" / "checkpoint").to(device)
    saved = {k: v.detach().clone() for k, v in enc.state_dict().items()}
    cache = StageCache(str(tmp / "roundtrip"))
    cache.put("k" * 64, enc.state_dict(), stages=[], seconds=0.0)
    fresh = AutoModel.from_config(enc.config).to(device)
    fresh.load_state_dict(cache.load(cache.get("k" * 64)))
    got = fresh.state_dict()
    same = all(torch.equal(saved[k], got[k].to(saved[k].device)) and saved[k].dtype == got[k].dtype for k in saved)
    return {"device": device, "tensors": len(saved), "bit_identical": bool(same and got.keys() == saved.keys())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12,
                    help="optimizer steps per intermediate stage (4x for the fine-tune)")
    ap.add_argument("--json", metavar="PATH", default=None)
    ap.add_argument("--keep", metavar="DIR", default=None, help="keep the runs' folders here (default: a temp dir)")
    args = ap.parse_args(argv)

    import torch
    import transformers

    from itt.cache import StageCache
    from itt.chain import prepare
    from itt.config import validate

    transformers.utils.logging.disable_progress_bar()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32: TF32 would round matmul inputs to 10 bits
    torch.backends.cudnn.allow_tf32 = False
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(1)
    cfg = validate(chain_raw(args.steps), "gpu_equivalence")
    p = prepare(cfg, log=lambda *a: None)
    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"gpu equivalence: tiny BERT chain {' > '.join(TASKS)} -> toy_xnli, {args.steps} steps/stage, "
          f"{N_EVAL} test examples x {len(p.languages)} languages; CUDA: {name if cuda else 'none'}", flush=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(args.keep) if args.keep else Path(t)
        tmp.mkdir(parents=True, exist_ok=True)
        runs: dict = {}
        cuda_repeat = None
        ref = run(cfg, p, "cpu", "no", tmp / "cpu")
        classes = predicted_classes(final_logits(p, tmp / "cpu" / "seed0" / "checkpoint"))
        print(f"  reference (cpu): predicts {classes} of {p.target.num_labels} classes on the test examples", flush=True)
        again = run(cfg, p, "cpu", "no", tmp / "cpu2")
        runs["cpu_repeat"] = compare("cpu vs cpu (repeat)", ref, tmp / "cpu", again, tmp / "cpu2", p, None)
        if cuda:
            fp32 = run(cfg, p, "cuda", "no", tmp / "cuda_fp32")
            runs["cuda_fp32"] = compare("cuda fp32 vs cpu", ref, tmp / "cpu", fp32, tmp / "cuda_fp32", p, FP32_TOL)
            # informational (not in "ok"): does hardware.deterministic repeat a CUDA chain exactly?
            fp32b = run(cfg, p, "cuda", "no", tmp / "cuda_fp32_repeat")
            repeat = compare("cuda fp32 repeat", fp32, tmp / "cuda_fp32", fp32b, tmp / "cuda_fp32_repeat", p, None)
            exact = repeat.pop("ok")
            cuda_repeat = {**repeat, "deterministic": True, "exact": exact}
            if torch.cuda.is_bf16_supported():
                bf16 = run(cfg, p, "cuda", "bf16", tmp / "cuda_bf16")
                runs["cuda_bf16"] = compare("cuda bf16 vs cpu", ref, tmp / "cpu", bf16, tmp / "cuda_bf16", p, BF16_TOL)
        else:
            print("  cuda fp32 / bf16 vs cpu: SKIPPED (no CUDA device)", flush=True)
        dev = "cuda" if cuda else "cpu"
        rt = cache_round_trip(p, tmp / "cpu", dev, tmp)
        print(f"  stage cache round trip on {dev}: {rt['tensors']} tensors, "
              f"{'bit-identical' if rt['bit_identical'] else 'DIFFERENT'}", flush=True)
        # the cache inside a chain, on the device: a second run takes every stage from it, same results
        cache_dir = str(tmp / "stage_cache")
        mixed = "no"
        first = run(cfg, p, dev, mixed, tmp / "cached1", cache=StageCache(cache_dir))
        second_cache = StageCache(cache_dir)
        second = run(cfg, p, dev, mixed, tmp / "cached2", cache=second_cache)
        dm, _ = metric_diff(first, second)
        cdl, cflips = logit_diff(final_logits(p, tmp / "cached1" / "seed0" / "checkpoint"),
                                 final_logits(p, tmp / "cached2" / "seed0" / "checkpoint"))
        # CPU: exactly; CUDA: the target fine-tune runs again, with kernels that may not be deterministic
        same = cdl == 0.0 if dev == "cpu" else (cdl <= FP32_TOL["logits"] and cflips <= FP32_TOL["metric_examples"])
        chain_ok = same and second_cache.stats.hits >= 1 and second_cache.stats.misses == 0
        print(f"  chain from the stage cache on {dev}: {second_cache.stats.hits} stage(s) from cache, "
              f"max |d logit| {cdl:.3e}, predictions differing {cflips}: "
              f"{('identical' if cdl == 0.0 else 'within fp32 tolerance') if chain_ok else 'DIFFERENT'}", flush=True)
    varied = classes >= 2
    if not varied:
        print("  the reference predicts one class: the prediction checks prove nothing (train longer: --steps)")
    ok = all(r["ok"] for r in runs.values()) and rt["bit_identical"] and chain_ok and varied
    fp = runs.get("cuda_fp32")
    out = {
        "benchmark": "gpu_equivalence", "device": name, "cuda": cuda, "torch": torch.__version__,
        "steps": args.steps, "n_eval": N_EVAL, "fp32_tolerance": FP32_TOL, "bf16_tolerance": BF16_TOL, "runs": runs,
        "reference_predicted_classes": classes,
        "cuda_skipped": not cuda, "cache_round_trip": rt, "cuda_repeat": cuda_repeat,
        "cache_chain": {"device": dev, "hits": second_cache.stats.hits, "misses": second_cache.stats.misses,
                        "max_abs_diff_metrics": dm, "max_abs_diff_logits": cdl, "max_predictions_differing": cflips,
                        "identical": cdl == 0.0, "ok": chain_ok},
        # the headline figure of bench/data/gpu.json: fp32 CUDA vs CPU, max over metrics and logits
        "cpu_gpu_max_abs_diff": max(fp["max_abs_diff_metrics"], fp["max_abs_diff_logits"]) if fp else None,
        "ok": ok,
    }
    print(f"equivalence: {'ok' if ok else 'FAILED'}" + (" (CUDA part skipped: no GPU)" if not cuda else ""))
    if args.json:
        write_json(args.json, out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
