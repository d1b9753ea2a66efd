"""Overhead of one chain training stage versus a plain hand-written Accelerate loop.

Both sides train the same ``TaskModel`` (tiny encoder from the config + fresh head, identical init
from the seed) on the same tokenized toy target split, with the same batch size, steps, sampler
(random, same generator seed), optimizer, schedule, clipping and threads. The chain side is
``itt.train.train_stage`` called exactly as ``itt.chain.run_seed`` calls it; anything it does beyond
the plain loop (loss bookkeeping, context managers, cleanup, ...) is the overhead measured here. Runs
are interleaved after a warm-up (chain plain, plain chain, chain plain, ...) so drift on a shared
machine hits both sides alike; identical final weights confirm both did the same work.

    python bench/stage_overhead.py                      # quickstart model, about a minute
    python bench/stage_overhead.py --steps 300 --rounds 5 --json runs/bench/overhead.json
    python bench/stage_overhead.py --profile            # plus a cProfile of one run of each side
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.97


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"), help="chain config (model, data, target)")
    ap.add_argument("--steps", type=int, default=150, help="optimizer steps per measured run")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the config's target batch size")
    ap.add_argument("--hidden", type=int, default=None, help="encoder hidden size (intermediate scales with it)")
    ap.add_argument("--layers", type=int, default=None, help="encoder layers")
    ap.add_argument("--rounds", type=int, default=5, help="measured runs per side, interleaved")
    ap.add_argument("--warmup-steps", type=int, default=20, help="steps of the untimed warm-up run of each side")
    # One thread by default: the tiny model gains nothing from intra-op parallelism, and on a shared
    # 2-core box two OpenMP threads per process make timings swing 5-25x (spin-waits when oversubscribed).
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads, the same for both sides (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", default=None, help="write the figures here")
    ap.add_argument("--profile", action="store_true", help="after measuring, cProfile one run of each side")
    a = ap.parse_args(argv)
    for name in ("steps", "rounds", "threads", "warmup_steps"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return a


# --------------------------------------------------------------------------- setup
def load(args):
    """Config, prepared data and tokenizer, exactly as ``itt.chain.run_chain`` gets them."""
    from itt.chain import prepare
    from itt.config import load_config

    over = []
    if args.hidden is not None:
        # keep the config's intermediate/hidden ratio so --hidden alone gives a sensible shape
        base = load_config(args.config).model.tiny
        ratio = base.intermediate_size / base.hidden_size
        over += [f"model.tiny.hidden_size={args.hidden}", f"model.tiny.intermediate_size={int(args.hidden * ratio)}"]
    if args.layers is not None:
        over.append(f"model.tiny.num_layers={args.layers}")
    # same sampler kind on both sides: the chain picks random on CPU, force it on GPU too
    over += ["hardware.group_by_length=false", "save_checkpoint=false"]
    cfg = load_config(args.config, over)
    if cfg.model.tiny is None:
        raise SystemExit("error: the config must use a 'tiny' model (this benchmark builds it from config)")
    return cfg, prepare(cfg, log=lambda *a: None)


def fresh_model(p, seed: int):
    """Encoder + head for the first stage, built like ``run_seed`` builds them (same seeds)."""
    from accelerate.utils import set_seed

    from itt.models import TaskModel, build_encoder, hidden_size, pooling_for
    from itt.train import new_head

    cfg = p.cfg
    set_seed(seed)
    max_len = max([cfg.stage_hparams(t.name).max_length for t in p.order] + [cfg.stage_hparams(None).max_length])
    encoder = build_encoder(cfg.model, p.tokenizer, max_length=max_len, sdpa=cfg.hardware.sdpa)
    stage_seed = seed * 1000 + 1
    set_seed(stage_seed)
    model = TaskModel(encoder, new_head(hidden_size(encoder), p.target, stage_seed), pooling_for(cfg.model, encoder),
                      p.target.is_regression)
    return model, stage_seed


# --------------------------------------------------------------------------- the two sides
def run_chain_side(acc, p, hp, steps: int, seed: int):
    """One stage through ``itt.train.train_stage``; returns (model, examples, wall s, loop s)."""
    from itt.train import train_stage

    model, stage_seed = fresh_model(p, seed)
    hp = hp.model_copy(update={"max_steps": steps})
    t0 = time.perf_counter()
    st = train_stage(acc, model, p.train[p.target.name], p.tokenizer, p.target, hp, seed=stage_seed,
                     hw=p.cfg.hardware, log=lambda s: None)
    wall = time.perf_counter() - t0
    assert st.steps == steps
    return model, st.examples, wall, st.seconds


def run_plain_side(acc, p, hp, steps: int, seed: int):
    """The same stage as a textbook Accelerate loop; returns (model, examples, wall s, loop s)."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler
    from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup

    model, stage_seed = fresh_model(p, seed)
    tok_ds, on_gpu = p.train[p.target.name], acc.device.type == "cuda"
    t0 = time.perf_counter()
    sampler = RandomSampler(tok_ds, generator=torch.Generator().manual_seed(stage_seed))
    collate = DataCollatorWithPadding(p.tokenizer, pad_to_multiple_of=8 if on_gpu else None)
    loader = DataLoader(tok_ds, batch_size=hp.batch_size, sampler=sampler, collate_fn=collate, pin_memory=on_gpu)
    # the usual no-decay split for biases and norms (it keeps the update identical to the chain's)
    groups = {True: [], False: []}
    for n, q in model.named_parameters():
        groups[q.ndim < 2 or "LayerNorm" in n or "layer_norm" in n].append(q)
    optimizer = torch.optim.AdamW([{"params": groups[False], "weight_decay": hp.weight_decay},
                                   {"params": groups[True], "weight_decay": 0.0}], lr=hp.lr, fused=on_gpu or None)
    pmodel, optimizer, loader = acc.prepare(model, optimizer, loader)
    sched = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * steps), steps)
    pmodel.train()
    step = seen = 0
    t1 = time.perf_counter()
    while step < steps:
        for batch in loader:
            labels = batch.pop("labels")
            loss = torch.nn.functional.cross_entropy(pmodel(**batch), labels)
            acc.backward(loss)
            acc.clip_grad_norm_(pmodel.parameters(), hp.max_grad_norm)
            optimizer.step()
            sched.step()
            optimizer.zero_grad(set_to_none=True)
            seen += labels.size(0)
            step += 1
            if step >= steps:
                break
    loop = time.perf_counter() - t1
    loss.item()
    wall = time.perf_counter() - t0
    # untimed: a plain single-stage loop has no cleanup; this only keeps rounds from piling up state
    acc.free_memory()
    return model, seen, wall, loop


def max_weight_diff(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from accelerate import Accelerator

    from itt.train import make_accelerator

    torch.set_num_threads(args.threads)
    try:  # settable once, before any parallel work; one inter-op thread keeps the two sides alike
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    cfg, p = load(args)
    hp = cfg.stage_hparams(None)
    if args.batch_size is not None:
        hp = hp.model_copy(update={"batch_size": args.batch_size})
    chain_acc = make_accelerator(cfg.hardware)
    # a second Accelerator shares the process state; mixed precision must match the chain's
    plain_acc = Accelerator(cpu=chain_acc.device.type != "cuda", mixed_precision=chain_acc.mixed_precision)
    sides = {"chain": (run_chain_side, chain_acc), "plain": (run_plain_side, plain_acc)}
    tiny, n = cfg.model.tiny, len(p.train[p.target.name])
    print(f"stage overhead: {p.target.name} train ({n} examples, max_length {hp.max_length}), "
          f"tiny {tiny.arch} h{tiny.hidden_size} L{tiny.num_layers}, batch {hp.batch_size}, {args.steps} steps, "
          f"{args.rounds} rounds, {torch.get_num_threads()} threads, device {chain_acc.device}", flush=True)

    for name, (fn, acc) in sides.items():  # warm-up: allocator, kernels, lazy imports
        fn(acc, p, hp, args.warmup_steps, args.seed)

    rows, diffs = [], []
    for r in range(args.rounds):
        # interleaved, and the side that goes first alternates, so neither always inherits the other's heap
        order = ["chain", "plain"] if r % 2 == 0 else ["plain", "chain"]
        row, models = {"round": r + 1, "order": order}, {}
        for name in order:
            fn, acc = sides[name]
            assert torch.get_num_threads() == args.threads, "something changed the thread count"
            models[name], ex, wall, loop = fn(acc, p, hp, args.steps, args.seed)
            row[name] = {"examples": ex, "wall_s": wall, "loop_s": loop, "ex_per_s": ex / wall, "loop_ex_per_s": ex / loop}
        # same init, batches and dropout draws: identical weights show both sides did the same work
        diffs.append(max_weight_diff(models["chain"], models["plain"]))
        rows.append(row)
        print(f"  round {r + 1}: chain {row['chain']['ex_per_s']:7.0f} ex/s   "
              f"plain {row['plain']['ex_per_s']:7.0f} ex/s", flush=True)

    med = {s: statistics.median(r[s]["ex_per_s"] for r in rows) for s in sides}
    med_loop = {s: statistics.median(r[s]["loop_ex_per_s"] for r in rows) for s in sides}
    ratio, ratio_loop = med["chain"] / med["plain"], med_loop["chain"] / med_loop["plain"]
    # the two runs of a round are back to back, so their ratio cancels slow load drift on a shared box
    paired = statistics.median(r["chain"]["ex_per_s"] / r["plain"]["ex_per_s"] for r in rows)
    paired_loop = statistics.median(r["chain"]["loop_ex_per_s"] / r["plain"]["loop_ex_per_s"] for r in rows)
    print()
    print(f"{'median of ' + str(args.rounds) + ' rounds':26}{'chain':>10}{'plain':>10}{'ratio':>9}{'paired':>9}")
    print(f"{'stage ex/s (incl. setup)':26}{med['chain']:10.0f}{med['plain']:10.0f}{ratio:9.3f}{paired:9.3f}")
    print(f"{'loop-only ex/s':26}{med_loop['chain']:10.0f}{med_loop['plain']:10.0f}{ratio_loop:9.3f}{paired_loop:9.3f}")
    print("(ratio: of the medians; paired: median of the per-round chain/plain ratios)")
    fixed = {s: statistics.median(r[s]["wall_s"] - r[s]["loop_s"] for r in rows) for s in sides}
    print(f"fixed cost per stage (wall - loop): chain {fixed['chain']:.3f} s, plain {fixed['plain']:.3f} s")
    print(f"same final weights: {'yes' if max(diffs) == 0 else 'no'} (max |diff| {max(diffs):.2e})")
    print(f"ratio chain/plain = {ratio:.3f}, paired {paired:.3f} (goal >= {GOAL}): "
          f"{'ok' if min(ratio, paired) >= GOAL else 'ok (paired)' if paired >= GOAL else 'BELOW GOAL'}")

    if args.json:
        out = {
            "benchmark": "stage_overhead", "config": args.config, "task": p.target.name, "examples_in_split": n,
            "model": tiny.model_dump(), "batch_size": hp.batch_size, "max_length": hp.max_length, "steps": args.steps,
            "rounds": args.rounds, "threads": args.threads, "device": str(chain_acc.device),
            "torch": torch.__version__, "per_round": rows, "median_ex_per_s": med, "median_loop_ex_per_s": med_loop,
            "ratio": ratio, "ratio_loop": ratio_loop, "ratio_paired": paired, "ratio_paired_loop": paired_loop,
            "fixed_s_per_stage": fixed, "goal": GOAL, "max_weight_diff": max(diffs),
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")

    if args.profile:
        import cProfile
        import pstats

        for name, (fn, acc) in sides.items():
            prof = cProfile.Profile()
            prof.runcall(fn, acc, p, hp, args.steps, args.seed)
            print(f"\n--- cProfile, {name} side, {args.steps} steps (top 15 by own time)")
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
