"""GPU throughput of one chain stage versus 🤗 ``transformers.Trainer`` (needs a CUDA GPU).

An XLM-R-base-sized random-init encoder (768 hidden, 12 layers, 12 heads, 3072 intermediate, 250002
vocabulary) with an XNLI head trains on synthetic sentence pairs whose lengths follow XNLI under the
XLM-R tokenizer (right-skewed, mean ~50 tokens, at most 128). Both sides get the same model object
layout, the same initial weights, the same examples, batch size and steps, bf16 autocast, sdpa
attention, length-grouped batches and a fused AdamW:

* chain: ``itt.train.train_stage`` with ``hardware: {mixed_precision: bf16, sdpa: true,
  group_by_length: true, fused_optimizer: true}``;
* Trainer: ``TrainingArguments(bf16=True, train_sampling_strategy="group_by_length")`` and its
  defaults otherwise (optimizer, collator, logging), on the same ``TaskModel`` plus a loss.

The dataset holds exactly ``steps * batch_size`` examples, so each run sees every example once and
tokens/s counts real (non-pad) tokens. Runs are timed end to end with CUDA syncs (setup included, as
a stage pays it), after an untimed warm-up of each side, interleaved with alternating order.

    python bench/gpu_throughput.py                       # H100/H200 defaults
    python bench/gpu_throughput.py --batch-size 64 --steps 400 --json runs/bench/gpu.json
    python bench/gpu_throughput.py --smoke               # tiny model on any device: tests the script only

The JSON is rewritten after every round, so a run cut off at a time limit keeps the rounds it finished.
``--profile N`` then runs each side once more for N steps under ``torch.profiler`` and adds what tells
where a side loses time: wall time against the time the GPU was busy (kernels), host syncs per step
(``aten::_local_scalar_dense``: ``.item()`` and friends; ``cudaStreamSynchronize``), and the top ops by
device time; the full tables go to ``--profile-table`` (default: the JSON's path with ``.profile.txt``).
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import statistics
import sys
import tempfile
import time

import torch
from _outputs import write_json  # (bench/ is on the path when a script runs)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

GOAL = 1.3
# dense bf16 peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets, matched against the device name in
# this order; an unlisted GPU needs --peak-tflops
PEAK_TFLOPS = [("H200 NVL", 835.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H200", 989.0), ("H100", 989.0),
               ("A100", 312.0)]


def peak_tflops(device_name: str) -> float | None:
    return next((v for key, v in PEAK_TFLOPS if key.lower() in device_name.lower()), None)

XLMR_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=250002)
SMOKE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=1000)
PAD, BOS, EOS = 1, 0, 2  # XLM-R's special ids


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per measured run (= examples / batch size)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="measured runs per side, interleaved")
    ap.add_argument("--warmup-steps", type=int, default=30, help="steps of the untimed warm-up run of each side")
    ap.add_argument("--mean-len", type=float, default=50.0, help="mean pair length in tokens, specials included")
    ap.add_argument("--max-len", type=int, default=128, help="longest pair (XNLI's usual max_length)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="peak dense bf16 TFLOP/s of the GPU (default: from its name, see PEAK_TFLOPS)")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", default=None, help="write the figures here")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="then profile each side for this many steps (torch.profiler); 0: no profile")
    ap.add_argument("--profile-table", metavar="PATH", default=None,
                    help="the profiler's tables (default: the JSON's path with .profile.txt)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny model, fp32, any device: checks the script runs; figures meaningless")
    a = ap.parse_args(argv)
    if a.profile < 0:
        ap.error("--profile must be >= 0")
    if a.peak_tflops is not None and a.peak_tflops <= 0:
        ap.error("--peak-tflops must be > 0")
    for name in ("steps", "batch_size", "rounds", "warmup_steps", "max_len"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 8 <= a.mean_len <= a.max_len:
        ap.error("--mean-len must lie between 8 and --max-len")
    if a.smoke:
        a.steps, a.warmup_steps = min(a.steps, 6), min(a.warmup_steps, 2)
        a.rounds, a.batch_size = min(a.rounds, 1), min(a.batch_size, 8)
    return a


# --------------------------------------------------------------------------- data
def pair_lengths(n: int, mean: float, max_len: int, rng):
    """XNLI-like pair lengths: log-normal (XNLI's right skew) with the given mean, clipped to [8, max_len]."""
    sigma = 0.45
    raw = rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, n)
    return [int(x) for x in raw.clip(8, max_len).round()]


def synthetic_pairs(n: int, mean: float, max_len: int, vocab: int, seed: int):
    """``<s> A </s></s> B </s>`` rows of random ids (the model is random-init: only shapes matter)."""
    import datasets
    import numpy as np

    datasets.disable_progress_bars()
    rng = np.random.default_rng(seed)
    ids, labels = [], rng.integers(0, 3, n).tolist()
    for length in pair_lengths(n, mean, max_len, rng):
        body = rng.integers(5, vocab, length - 4).tolist()
        cut = max(1, round(len(body) * 0.65))  # premises run about twice as long as hypotheses
        ids.append([BOS, *body[:cut], EOS, EOS, *body[cut:], EOS])
    return datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids], "labels": labels})


def pad_tokenizer():
    """A tokenizer that only pads (with XLM-R's pad id): all the collators need; no download."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": BOS, "<pad>": PAD, "</s>": EOS, "<unk>": 3}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")), bos_token="<s>",
                                   pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_input_names=["input_ids", "attention_mask"])


# --------------------------------------------------------------------------- model
def build_template(smoke: bool, device, seed: int):
    """The random-init TaskModel every run copies (so all runs start from the same weights)."""
    from transformers import AutoConfig, AutoModel

    from itt.models import TaskModel
    from itt.tasks import resolve_task
    from itt.train import new_head

    task = resolve_task("xnli")
    config = AutoConfig.for_model("xlm-roberta", max_position_embeddings=514, type_vocab_size=1, pad_token_id=PAD,
                                  bos_token_id=BOS, eos_token_id=EOS, **(SMOKE if smoke else XLMR_BASE))
    torch.manual_seed(seed)
    with torch.device(device):  # initialise in place: a 250k x 768 embedding is slow to init on CPU
        encoder = AutoModel.from_config(config, attn_implementation="sdpa")
        model = TaskModel(encoder, new_head(config.hidden_size, task, seed), "first", task.is_regression)
    return model.to(device), task


def matmul_params(model) -> int:
    # Embedding rows are looked up, not multiplied: counting them in 6*N would inflate MFU ~3x here.
    return sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in f".{n}")


class WithLoss(torch.nn.Module):
    """A TaskModel returning the ``{"loss", "logits"}`` Trainer expects (the chain's loss, in fp32)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, labels=None):
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits.float(), labels)
        return out


# --------------------------------------------------------------------------- the two sides
def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _release(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_chain(template, task, ds, tok, args, hw, steps: int, device) -> float:
    """One stage through ``train_stage`` (an accelerator per run, as one per chain); returns seconds."""
    from itt.config import TrainDefaults
    from itt.train import make_accelerator, train_stage

    acc = make_accelerator(hw)
    hp = TrainDefaults(lr=args.lr, batch_size=args.batch_size, max_steps=steps, max_length=args.max_len,
                       warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0)
    model = copy.deepcopy(template)
    _sync(device)
    t0 = time.perf_counter()
    st = train_stage(acc, model, ds, tok, task, hp, seed=args.seed, hw=hw)
    _sync(device)
    secs = time.perf_counter() - t0
    assert st.steps == steps and st.examples == len(ds), (st.steps, st.examples, len(ds))
    del model, acc
    _release(device)
    return secs


def run_trainer(template, ds, tok, args, steps: int, device, info: dict) -> float:
    """The same stage with a stock Trainer; returns seconds of ``trainer.train()``."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    model = WithLoss(copy.deepcopy(template))
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=steps, learning_rate=args.lr,
            warmup_steps=0.1, lr_scheduler_type="linear", weight_decay=0.01, max_grad_norm=1.0,
            bf16=not args.smoke, use_cpu=device.type != "cuda", train_sampling_strategy="group_by_length",
            dataloader_num_workers=0, save_strategy="no", report_to="none", disable_tqdm=True, seed=args.seed,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=ds, processing_class=tok)
        trainer.remove_callback(PrinterCallback)  # keeps its end-of-train metrics dict off stdout
        info.setdefault("trainer_optim", str(getattr(targs.optim, "value", targs.optim)))
        _sync(device)
        t0 = time.perf_counter()
        trainer.train()
        _sync(device)
        secs = time.perf_counter() - t0
        assert trainer.state.global_step == steps, trainer.state.global_step
    del trainer, model
    _release(device)
    return secs


# --------------------------------------------------------------------------- figures
def summarize(rows: list[dict], tokens: int, n_mm: int, n_all: int, peak_tf: float) -> dict:
    """Medians over the rounds so far: tokens/s, MFU (6 * non-embedding params * tokens/s / peak), ratio."""
    peak = peak_tf * 1e12
    sides = ("chain", "trainer")
    tps = {s: statistics.median(r[s]["tokens_per_s"] for r in rows) for s in sides}
    return {"rounds_done": len(rows), "per_round": rows, "median_tokens_per_s": tps,
            "mfu": {s: 6 * n_mm * tps[s] / peak for s in sides},
            "mfu_all_params": {s: 6 * n_all * tps[s] / peak for s in sides},
            "ratio": tps["chain"] / tps["trainer"],
            "ratio_paired": statistics.median(r["chain"]["tokens_per_s"] / r["trainer"]["tokens_per_s"] for r in rows)}


def print_summary(out: dict, n_examples: int, tokens: int, n_mm: int, n_all: int, args) -> None:
    tps, mfu, ratio = out["median_tokens_per_s"], out["mfu"], out["ratio"]
    print()
    print(f"{'median of ' + str(out['rounds_done']) + ' rounds':24}{'chain':>12}{'Trainer':>12}{'chain/Trainer':>15}")
    print(f"{'tokens/s (non-pad)':24}{tps['chain']:12.0f}{tps['trainer']:12.0f}{ratio:15.3f}")
    print(f"{'examples/s':24}{tps['chain'] * n_examples / tokens:12.1f}{tps['trainer'] * n_examples / tokens:12.1f}")
    print(f"{'MFU':24}{100 * mfu['chain']:11.1f}%{100 * mfu['trainer']:11.1f}%")
    print(f"MFU = 6 * {n_mm / 1e6:.1f}M non-embedding params * tokens/s / {args.peak_tflops:g} TFLOP/s "
          f"(counting all {n_all / 1e6:.1f}M params would read {n_all / n_mm:.2f}x higher)")
    print(f"Trainer optimizer: {out.get('trainer_optim')}; paired ratio (median per round) {out['ratio_paired']:.3f}")
    print(f"ratio chain/Trainer = {ratio:.3f} (goal >= {GOAL}): {'ok' if ratio >= GOAL else 'BELOW GOAL'}", flush=True)


# --------------------------------------------------------------------------- profile
SYNC_OPS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def profile_side(fn, ds, steps: int, device) -> tuple[dict, str]:
    """One run of a side under torch.profiler: (figures, the op table as text)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        fn(ds, steps)
    wall = time.perf_counter() - t0
    avg = prof.key_averages()
    by = {e.key: e for e in avg}
    # the GPU's busy time: the kernels' rows only (a CPU op's row repeats the time of the kernels it
    # launched; torch's own table sums the device rows the same way)
    busy_us = sum(e.self_device_time_total for e in avg if e.device_type == torch.autograd.DeviceType.CUDA)
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    top = sorted(avg, key=lambda e: getattr(e, sort, 0), reverse=True)[:12]
    figures = {
        "steps": steps, "wall_s": wall, "device_busy_s": busy_us / 1e6,
        "device_busy_share": busy_us / 1e6 / wall if device.type == "cuda" else None,
        "local_scalar_dense_per_step": (by["aten::_local_scalar_dense"].count / steps
                                        if "aten::_local_scalar_dense" in by else 0.0),
        "stream_syncs_per_step": sum(by[k].count for k in SYNC_OPS if k in by) / steps,
        "top_ops": [{"op": e.key, "count": e.count, "self_device_ms": getattr(e, "self_device_time_total", 0) / 1e3,
                     "self_cpu_ms": e.self_cpu_time_total / 1e3} for e in top],
    }
    return figures, avg.table(sort_by=sort, row_limit=30)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available() and not args.smoke:
        print("error: needs a CUDA GPU", file=sys.stderr)
        return 2
    import transformers

    from itt.config import HardwareConfig

    transformers.logging.set_verbosity_error()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke and device.type == "cpu":
        torch.set_num_threads(1)  # a smoke run on a shared CPU box: one thread is the quick, steady choice
    on_gpu = device.type == "cuda"
    hw = HardwareConfig(device=device.type, mixed_precision="bf16" if on_gpu and not args.smoke else "no", sdpa=True,
                        group_by_length=True, fused_optimizer=on_gpu)
    template, task = build_template(args.smoke, device, args.seed)
    vocab = template.encoder.config.vocab_size
    tok = pad_tokenizer()
    ds = synthetic_pairs(args.steps * args.batch_size, args.mean_len, args.max_len, vocab, args.seed)
    warm = synthetic_pairs(args.warmup_steps * args.batch_size, args.mean_len, args.max_len, vocab, args.seed + 1)
    tokens = sum(len(x) for x in ds["input_ids"])
    n_all, n_mm = sum(p.numel() for p in template.parameters()), matmul_params(template)
    name = torch.cuda.get_device_name() if on_gpu else "cpu"
    if args.peak_tflops is None:
        known = peak_tflops(name)
        args.peak_tflops = known or 989.0
        if on_gpu and known is None:
            print(f"warning: no peak TFLOP/s known for {name}: MFU against 989 (H100/H200 SXM); "
                  "give --peak-tflops", flush=True)
    what = "SMOKE, tiny XLM-R (figures meaningless)" if args.smoke else "XLM-R-base-sized random init"
    print(f"gpu throughput: {what} ({n_all / 1e6:.1f}M params, {n_mm / 1e6:.1f}M outside embeddings), "
          f"{len(ds)} XNLI-like pairs "
          f"(mean {tokens / len(ds):.1f} tokens, max {args.max_len}), batch {args.batch_size}, {args.steps} steps, "
          f"{args.rounds} rounds, {hw.mixed_precision}, on {name}", flush=True)

    info: dict = {}
    sides = {
        "chain": lambda d, s: run_chain(template, task, d, tok, args, hw, s, device),
        "trainer": lambda d, s: run_trainer(template, d, tok, args, s, device, info),
    }
    for fn in sides.values():  # warm-up: CUDA context, cuBLAS/cuDNN plans, allocator, lazy imports
        fn(warm, args.warmup_steps)
    meta = {"benchmark": "gpu_throughput", "smoke": args.smoke, "device": name, "torch": torch.__version__,
            "transformers": transformers.__version__, "params": n_all, "matmul_params": n_mm, "examples": len(ds),
            "tokens": tokens, "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
            "mixed_precision": hw.mixed_precision, "peak_tflops": args.peak_tflops, "goal": GOAL}
    rows: list[dict] = []
    for r in range(args.rounds):
        order = ["chain", "trainer"] if r % 2 == 0 else ["trainer", "chain"]
        row = {"round": r + 1, "order": order}
        for side in order:
            secs = sides[side](ds, args.steps)
            row[side] = {"seconds": secs, "tokens_per_s": tokens / secs, "examples_per_s": len(ds) / secs}
        rows.append(row)
        print(f"  round {r + 1}: chain {row['chain']['tokens_per_s']:10.0f} tok/s   "
              f"trainer {row['trainer']['tokens_per_s']:10.0f} tok/s", flush=True)
        out = {**meta, **summarize(rows, tokens, n_mm, n_all, args.peak_tflops), **info}
        if args.json:  # after every round: a run cut off at a time limit keeps the rounds it finished
            write_json(args.json, out)
    print_summary(out, len(ds), tokens, n_mm, n_all, args)

    if args.profile:
        tables, out["profile"] = [], {}
        for side, fn in sides.items():
            out["profile"][side], table = profile_side(fn, warm if args.profile <= args.warmup_steps else ds,
                                                       min(args.profile, args.steps), device)
            tables.append(f"==== {side}: {args.profile} steps, sorted by self "
                          f"{'device' if on_gpu else 'CPU'} time\n{table}\n")
            f = out["profile"][side]
            print(f"profile {side:8}: {f['wall_s']:.2f} s wall, "
                  + (f"GPU busy {100 * f['device_busy_share']:.0f}%, " if on_gpu else "")
                  + f"{f['local_scalar_dense_per_step']:.1f} .item()-style syncs/step, "
                  f"{f['stream_syncs_per_step']:.1f} stream syncs/step", flush=True)
        table_path = args.profile_table or (os.path.splitext(args.json)[0] + ".profile.txt" if args.json else None)
        if table_path:
            with open(table_path, "w") as fh:
                fh.write("\n".join(tables))
            out["profile"]["tables"] = os.path.basename(table_path)
        if args.json:
            write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
