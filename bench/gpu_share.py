"""Trials sharing one GPU: aggregate training throughput of 1, 2, 4, 8 concurrent chain stages.

Ray runs fractional-GPU trials (``search.resources.gpus_per_worker: 0.25``) as separate processes on
one device, each with its own CUDA context, allocator and optimizer. This benchmark does the same:
for each concurrency N it spawns N fresh processes; each builds the XLM-R-base-sized random-init
encoder + XNLI head of ``bench/gpu_throughput.py``, trains an untimed warm-up, waits at a barrier,
then trains one timed stage through ``itt.train.train_stage`` (bf16, sdpa, length-grouped batches,
fused AdamW: the chain's GPU defaults) on XNLI-like synthetic pairs. Each of the N processes keeps to
1/N of the GPU's memory, as a search's trials at ``gpus_per_worker: 1/N`` do (``itt.train.cap_gpu_memory``);
a process that runs out of its share goes on in micro-batches, and the level says so.

Figures per N: aggregate real (non-pad) tokens/s = all processes' tokens / (last end - first start),
its ratio to one process alone, each process's own tokens/s, and peak GPU memory per process
(``max_memory_reserved``, the allocator's high-water mark; the CUDA context's ~0.5 GB comes on top).
From them: the largest N whose aggregate still grows by >= 10% over the previous N, as the
``gpus_per_worker`` to advise (1/N) for this model size. Last, the out-of-memory check (``oom_check``):
one process again with less memory than its stage held, which must go on in micro-batches and finish.

    python bench/gpu_share.py                                  # N = 1 2 4 8, XLM-R base, on the GPU
    python bench/gpu_share.py --procs 1 2 4 --steps 200 --json runs/bench/share.json
    python bench/gpu_share.py --smoke                          # tiny model, CPU ok, N = 1 2: tests the script
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_throughput's model and data (also in spawned children)
from _outputs import write_json

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

GROWTH = 1.10  # a concurrency level is worth it when the aggregate grows by at least this factor
OOM_CHECK_STEPS = 30  # timed steps of the out-of-memory check


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrency levels to measure")
    ap.add_argument("--steps", type=int, default=150, help="timed optimizer steps per process")
    ap.add_argument("--warmup-steps", type=int, default=15, help="untimed steps per process before the barrier")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mean-len", type=float, default=50.0)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for one concurrency level")
    ap.add_argument("--json", metavar="PATH", default=None, help="write the figures here")
    ap.add_argument("--smoke", action="store_true", help="tiny model, fp32, any device, N = 1 2; figures meaningless")
    ap.add_argument("--no-oom-check", dest="oom_check", action="store_false",
                    help="skip the last run: one process with less GPU memory than its stage needs (micro-batches)")
    a = ap.parse_args(argv)
    if a.smoke:
        a.procs = sorted({min(p, 2) for p in a.procs} | {1})[:2]
        a.steps, a.warmup_steps, a.batch_size = min(a.steps, 6), min(a.warmup_steps, 1), min(a.batch_size, 8)
    if any(p < 1 for p in a.procs) or a.steps < 1 or a.warmup_steps < 0 or a.batch_size < 1:
        ap.error("--procs, --steps and --batch-size must be >= 1 (--warmup-steps >= 0)")
    a.procs = sorted(set(a.procs))
    return a


# --------------------------------------------------------------------------- one process (one "trial")
def worker(rank: int, n: int, args: argparse.Namespace, barrier, queue) -> None:
    """Build, warm up, wait for the others, train one timed stage, report figures (or the error)."""
    try:
        import torch
        import transformers
        from gpu_throughput import build_template, pad_tokenizer, synthetic_pairs

        from itt.config import HardwareConfig, TrainDefaults
        from itt.train import cap_gpu_memory, make_accelerator, train_stage

        transformers.logging.set_verbosity_error()
        on_gpu = torch.cuda.is_available()
        if getattr(args, "cap_mib", None) and on_gpu:  # the out-of-memory check: less than the stage needs
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(args.cap_mib * 2**20 / total)
        else:
            cap_gpu_memory(1 / n)  # as a search's trials at gpus_per_worker 1/n keep to their share (no-op on CPU)
        if not on_gpu:
            torch.set_num_threads(1)  # N processes on a few cores: one thread each, no oversubscription
        device = torch.device("cuda" if on_gpu else "cpu")
        hw = HardwareConfig(device=device.type, mixed_precision="bf16" if on_gpu and not args.smoke else "no", sdpa=True,
                            group_by_length=True, fused_optimizer=on_gpu)
        model, task = build_template(args.smoke, device, args.seed + rank)
        if getattr(args, "fake_oom_rows", None):  # (CPU: the error a capped GPU raises, from a forward hook)
            model.register_forward_pre_hook(_fake_oom(args.fake_oom_rows), with_kwargs=True)
        vocab = model.encoder.config.vocab_size
        tok = pad_tokenizer()
        ds = synthetic_pairs(args.steps * args.batch_size, args.mean_len, args.max_len, vocab, args.seed + 100 + rank)
        tokens = sum(len(x) for x in ds["input_ids"])

        def stage(data, steps):
            hp = TrainDefaults(lr=args.lr, batch_size=args.batch_size, max_steps=steps, max_length=args.max_len,
                               warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0)
            return train_stage(make_accelerator(hw), model, data, tok, task, hp, seed=args.seed, hw=hw)

        if args.warmup_steps:
            warm = synthetic_pairs(args.warmup_steps * args.batch_size, args.mean_len, args.max_len, vocab, args.seed + 1)
            stage(warm, args.warmup_steps)
        if on_gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        barrier.wait(timeout=args.timeout)
        t0 = time.time()
        st = stage(ds, args.steps)
        if on_gpu:
            torch.cuda.synchronize()
        t1 = time.time()
        assert st.steps == args.steps, (st.steps, args.steps)
        queue.put({
            "rank": rank, "start": t0, "end": t1, "tokens": tokens, "tokens_per_s": tokens / (t1 - t0),
            "peak_gpu_reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if on_gpu else None,
            "peak_gpu_allocated_mib": torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "micro_batches": st.micro_batches,  # > 1: the process ran out of GPU memory and cut its batches
            "train_loss": st.train_loss, "params": sum(p.numel() for p in model.parameters()),
        })
    except BaseException as e:
        try:
            barrier.abort()
        except Exception:
            pass
        queue.put({"rank": rank, "error": f"{type(e).__name__}: {e}"})


def _fake_oom(rows: int):
    def hook(module, a, kwargs):
        import torch

        ids = kwargs.get("input_ids", a[0] if a else None)
        if ids is not None and ids.size(0) > rows:
            raise torch.OutOfMemoryError(f"CUDA out of memory (smoke: {ids.size(0)} rows > {rows})")

    return hook


def measure(n: int, args: argparse.Namespace) -> dict:
    """N concurrent processes; the aggregate over the window in which they all trained."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # a fresh interpreter and CUDA context per process, as Ray's workers
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, n, args, barrier, queue), daemon=True) for r in range(n)]
    for p in procs:
        p.start()
    rows, deadline = [], time.time() + args.timeout
    while len(rows) < n and time.time() < deadline:
        try:
            rows.append(queue.get(timeout=5))
        except Exception:
            if not any(p.is_alive() for p in procs) and queue.empty():
                break
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()  # only our own children
    errors = [r["error"] for r in rows if "error" in r]
    if errors or len(rows) < n:
        raise RuntimeError(f"{n} processes: {errors or f'only {len(rows)} of {n} reported'}")
    rows.sort(key=lambda r: r["rank"])
    window = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    mem = [r["peak_gpu_reserved_mib"] for r in rows if r["peak_gpu_reserved_mib"] is not None]
    return {
        "procs": n, "window_s": window, "aggregate_tokens_per_s": sum(r["tokens"] for r in rows) / window,
        "per_process_tokens_per_s": [r["tokens_per_s"] for r in rows],
        "median_process_tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows),
        "peak_gpu_reserved_mib_max": max(mem) if mem else None, "peak_rss_mib_max": max(r["peak_rss_mib"] for r in rows),
        "micro_batches_max": max(r["micro_batches"] for r in rows),
        "per_process": rows,
    }


def oom_check(levels: list[dict], args: argparse.Namespace, on_gpu: bool) -> dict:
    """One process as the first level's, with less GPU memory than its stage held: its weights, gradients
    and AdamW states (16 bytes a parameter) and half of what its activations took on top. The stage must
    run out, go on in micro-batches (itt.train.MicroBatches) and finish; against the first level's
    process: how many micro-batches, tokens/s as a share of the uncut stage's, and, where it ran as many
    steps (at most OOM_CHECK_STEPS), the train loss's difference (the same batches; dropout masks and
    bf16 sums differ). On CPU (--smoke) a forward hook raises the error above half the batch instead."""
    ref = next(lv for lv in levels if lv["procs"] == 1)["per_process"][0]
    # (short: it comes last, within the part's share of gpu_all.sh's budget; tokens/s is a rate either way)
    check = argparse.Namespace(**{**vars(args), "steps": min(args.steps, OOM_CHECK_STEPS),
                                  "warmup_steps": min(args.warmup_steps, 3)})
    if on_gpu:
        static = 16 * ref["params"] / 2**20
        peak = ref["peak_gpu_reserved_mib"]
        if peak - static < 256:
            return {"skipped": f"activations of {peak - static:.0f} MiB: too little to cut at batch {args.batch_size}"}
        check.cap_mib = static + (peak - static) / 2
    else:
        check.fake_oom_rows = max(1, args.batch_size // 2)
    try:
        got = measure(1, check)["per_process"][0]
    except RuntimeError as e:
        return {"cap_mib": getattr(check, "cap_mib", None), "ok": False, "error": str(e)[:500]}
    return {"cap_mib": getattr(check, "cap_mib", None), "reference_peak_mib": ref["peak_gpu_reserved_mib"],
            "micro_batches": got["micro_batches"], "tokens_per_s_ratio": got["tokens_per_s"] / ref["tokens_per_s"],
            # the same batches only when it ran as many steps as the reference
            "train_loss_diff": abs(got["train_loss"] - ref["train_loss"]) if check.steps == args.steps else None,
            "steps": check.steps, "ok": got["micro_batches"] > 1}


def advise(levels: list[dict]) -> int:
    """The largest N reached while each step up in concurrency still gained >= GROWTH x aggregate."""
    best = levels[0]
    for lv in levels[1:]:
        if lv["aggregate_tokens_per_s"] < GROWTH * best["aggregate_tokens_per_s"]:
            break
        best = lv
    return best["procs"]


def figures(levels: list[dict], args, device: str, torch_version: str) -> dict:
    """The JSON of the levels measured so far: aggregate tokens/s of each level over one process's."""
    one = next((lv for lv in levels if lv["procs"] == 1), levels[0])
    ratios = {str(lv["procs"]): lv["aggregate_tokens_per_s"] / one["aggregate_tokens_per_s"] for lv in levels}
    return {"benchmark": "gpu_share", "smoke": args.smoke, "device": device, "torch": torch_version,
            "steps": args.steps, "batch_size": args.batch_size, "share_throughput": ratios,
            "advised_gpus_per_worker": 1 / advise(levels), "levels": levels, "levels_done": len(levels)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.smoke:
        print("error: needs a CUDA GPU (or --smoke)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if on_gpu else "cpu"
    what = "SMOKE, tiny XLM-R (figures meaningless)" if args.smoke else "XLM-R-base-sized random init, bf16"
    print(f"gpu share: {what}; processes {args.procs}; {args.steps} steps x batch {args.batch_size} each; on {name}",
          flush=True)
    levels: list[dict] = []
    for n in args.procs:
        lv = measure(n, args)
        levels.append(lv)
        mem = f"{lv['peak_gpu_reserved_mib_max']:.0f} MiB GPU" if lv["peak_gpu_reserved_mib_max"] is not None else \
            f"{lv['peak_rss_mib_max']:.0f} MiB RSS"
        print(f"  {n} process(es): aggregate {lv['aggregate_tokens_per_s']:10.0f} tok/s, "
              f"per process {lv['median_process_tokens_per_s']:10.0f} tok/s, peak {mem} per process"
              + (f"; out of memory: batches cut into up to {lv['micro_batches_max']} micro-batches"
                 if lv["micro_batches_max"] > 1 else ""), flush=True)
        out = figures(levels, args, name, torch.__version__)
        if args.json:  # after every level: a run cut off at a time limit keeps the levels it finished
            write_json(args.json, out)
    if args.oom_check and any(lv["procs"] == 1 for lv in levels):
        out["oom_check"] = oom = oom_check(levels, args, on_gpu)
        if "micro_batches" in oom:
            cap = f"cap {oom['cap_mib']:.0f} MiB" if oom["cap_mib"] else "smoke: a forward hook above half the batch"
            print(f"  out of memory on purpose ({cap}): the stage went on in {oom['micro_batches']} "
                  f"micro-batches per batch at {oom['tokens_per_s_ratio']:.2f}x the uncut stage's tokens/s"
                  + (f", train loss {oom['train_loss_diff']:.2g} from it" if oom["train_loss_diff"] is not None else ""),
                  flush=True)
        else:
            print(f"  out-of-memory check: {oom.get('skipped') or oom.get('error')}", flush=True)
        if args.json:
            write_json(args.json, out)
    ratios, n_best = out["share_throughput"], advise(levels)
    print()
    print(f"{'processes':>10}{'aggregate tok/s':>18}{'ratio to 1':>12}{'peak MiB/proc':>15}")
    for lv in levels:
        peak = lv["peak_gpu_reserved_mib_max"] if lv["peak_gpu_reserved_mib_max"] is not None else lv["peak_rss_mib_max"]
        print(f"{lv['procs']:>10}{lv['aggregate_tokens_per_s']:>18.0f}{ratios[str(lv['procs'])]:>12.2f}{peak:>15.0f}")
    print(f"advice: gpus_per_worker = {1 / n_best:g} ({n_best} trial(s) per GPU: the last level that still gained "
          f">= {GROWTH:.2f}x aggregate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
