"""One training stage with 🤗 Accelerate, and batched prediction.

The loop follows Accelerate's order (accelerator, seed, data, model, optimizer, one ``prepare``,
``accelerator.backward``, ``gather_for_metrics``) and reads top to bottom, one comment per phase.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from itt.config import HardwareConfig, TrainDefaults
from itt.errors import UserError
from itt.models import GPU_PAD_MULTIPLE, ClassificationHead, TaskModel
from itt.tasks import Kind, Task


def make_accelerator(hw: HardwareConfig):
    """An Accelerator for ``hw``. On CPU it is ``Accelerator(cpu=True)``: in a multi-process CPU run
    (Ray Train workers with gloo) plain ``Accelerator()`` gives one process and no gradient sync."""
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    if hw.device == "cuda" and not cuda:
        raise UserError("hardware.device: 'cuda' asked for but no GPU is visible")
    on_gpu = cuda and hw.device != "cpu"
    mp = hw.mixed_precision
    if mp == "auto":
        mp = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    if mp != "no" and not on_gpu:
        raise UserError(f"hardware.mixed_precision: '{mp}' needs a GPU; use 'no' or 'auto' on CPU")
    return Accelerator(cpu=not on_gpu, mixed_precision=mp)


@contextlib.contextmanager
def deterministic(on: bool):
    """``hardware.deterministic``: deterministic kernels while a chain runs (``warn_only``: an op without
    one warns instead of failing), cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, read when the
    process first uses cuBLAS: a trial process sets it before its first chain), cuDNN without
    autotuning; torch's previous settings come back afterwards."""
    if not on:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              cudnn.deterministic, cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.deterministic, cudnn.benchmark = before[2], before[3]


def hardware_record(accelerator) -> dict:
    """What a chain ran on, for results.json (a paper's compute statement): device type and name, the
    processes training it, mixed precision and the torch version."""
    dev = accelerator.device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    memory = {"gpu_memory_mib": torch.cuda.get_device_properties(dev).total_memory / 2**20} if dev.type == "cuda" else {}
    return {"device": dev.type, "device_name": name, "processes": int(accelerator.num_processes),
            "mixed_precision": str(accelerator.mixed_precision), "torch": torch.__version__, **memory}


def _cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def tokenize(ds, task: Task, tokenizer, max_length: int):
    """Token ids per example (no padding: batches are padded dynamically by the collator)."""

    def enc(batch):
        out = tokenizer(*[batch[f] for f in task.fields], truncation=True, max_length=max_length)
        out["labels"] = batch["label"]
        return out

    keep = set(tokenizer.model_input_names) | {"labels"}
    tok = ds.map(enc, batched=True, remove_columns=ds.column_names, desc=None)
    return tok.remove_columns([c for c in tok.column_names if c not in keep])


class PadCollator:
    """Pads what :class:`DataCollatorWithPadding` cannot: per-token labels (with -100, aligned to the
    unpadded sequence: the models align their outputs the same way) and multiple-choice inputs
    ``[options, seq]``. Inputs are padded on the tokenizer's side (left for XLNet)."""

    def __init__(self, tokenizer, multiple: int | None = None):
        self.pad = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": tokenizer.pad_token_type_id}
        self.left = tokenizer.padding_side == "left"
        self.multiple = multiple

    def _width(self, seqs) -> int:
        n = max((len(x) for x in seqs), default=0)
        return -(-n // self.multiple) * self.multiple if self.multiple else n

    def __call__(self, rows: list[dict]) -> dict:
        out = {}
        nested = rows and isinstance(rows[0]["input_ids"][0], list)
        for key, value in self.pad.items():
            if key not in rows[0]:
                continue
            seqs = [s for r in rows for s in (r[key] if nested else [r[key]])]
            w = self._width(seqs)
            padded = [[value] * (w - len(s)) + list(s) if self.left else list(s) + [value] * (w - len(s)) for s in seqs]
            t = torch.tensor(padded, dtype=torch.long)
            out[key] = t.view(len(rows), -1, w) if nested else t
        if "labels" in rows[0]:
            labels = [r["labels"] for r in rows]
            if isinstance(labels[0], list):
                w = max(len(x) for x in labels)
                labels = [list(x) + [-100] * (w - len(x)) for x in labels]
            out["labels"] = torch.tensor(labels)
        return out


def _collator(tokenizer, on_gpu: bool, tok_ds=None):
    from transformers import DataCollatorWithPadding

    # multiples of 8 let tensor cores work on GPU; on CPU they only add padding
    multiple = GPU_PAD_MULTIPLE if on_gpu else None
    if tok_ds is not None and _needs_pad_collator(tok_ds):
        return PadCollator(tokenizer, multiple)
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)


def _needs_pad_collator(tok_ds) -> bool:
    import datasets

    feats = tok_ds.features
    nested = isinstance(feats.get("input_ids"), (datasets.Sequence, list)) and isinstance(
        getattr(feats["input_ids"], "feature", None) or (feats["input_ids"][0] if isinstance(feats["input_ids"], list) else None),
        (datasets.Sequence, list))
    lab = feats.get("labels")
    return nested or lab is None or isinstance(lab, (datasets.Sequence, list))


def train_loader(tok_ds, tokenizer, *, batch_size: int, seed: int, group_by_length: bool, on_gpu: bool, num_workers: int = 0):
    g = torch.Generator().manual_seed(seed)
    if group_by_length:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        lengths = [len(x) for x in tok_ds["input_ids"]]
        sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=g)
    else:
        sampler = RandomSampler(tok_ds, generator=g)
    return DataLoader(tok_ds, batch_size=batch_size, sampler=sampler, collate_fn=_collator(tokenizer, on_gpu, tok_ds),
                      num_workers=num_workers, pin_memory=on_gpu)


def eval_loader(tok_ds, tokenizer, *, batch_size: int, on_gpu: bool):
    return DataLoader(tok_ds, batch_size=batch_size, sampler=SequentialSampler(tok_ds),
                      collate_fn=_collator(tokenizer, on_gpu, tok_ds))


def _optimizer(model: torch.nn.Module, hp: TrainDefaults, fused: bool):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # as the 🤗 Trainer (get_decay_parameter_names): no decay on biases, by name too (XLNet's 2-D
        # r_w_bias / r_r_bias / r_s_bias), nor on norm weights
        name = n.lower()
        (no_decay if p.ndim < 2 or "bias" in name or "layernorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp.lr, fused=fused or None)


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return torch.nn.functional.mse_loss(logits.float(), labels.float())
    return torch.nn.functional.cross_entropy(logits.float(), labels.long())


@dataclass
class StageStats:
    task: str
    steps: int
    examples: int  # examples seen (all processes), counting repeats over epochs
    train_loss: float  # mean loss over the last 10% of steps (at least one)
    seconds: float
    examples_per_s: float
    # input tokens processed, padding included (summed over processes): the stage's work whatever the load of the
    # machine (a transformer's training FLOPs are about 6 x parameters x tokens; Kaplan et al. 2020); the padding
    # depends on the device's batching (on a GPU: length-grouped batches, padded to multiples of 8)
    tokens: int = 0
    # micro-batches each batch was cut into by the stage's end: 1 unless it ran out of GPU memory (MicroBatches)
    micro_batches: int = 1
    # on CUDA: the most GPU memory the process's allocator held during the stage (MiB; max_memory_reserved,
    # what other trials sharing the GPU cannot have; the CUDA context's ~0.5 GiB comes on top)
    peak_gpu_mib: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def new_head(encoder_hidden: int, task: Task, seed: int, dropout: float = 0.1) -> ClassificationHead:
    # a fresh head per stage, initialised from the stage seed (the target head starts fresh too)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ClassificationHead(encoder_hidden, task.num_labels, dropout)


def train_stage(accelerator, model: TaskModel, tok_ds, tokenizer, task: Task, hp: TrainDefaults, *, seed: int,
                hw: HardwareConfig, log=None, progress=None) -> StageStats:
    """Train ``model`` (encoder + head) on one task; returns its statistics. Updates ``model`` in place.

    ``progress``: called after every optimizer step with ``{"step", "total", "loss"}``; the loss is the
    step's 0-d tensor, so that nothing waits for the device unless the callback reads it."""
    on_gpu = accelerator.device.type == "cuda"
    group = hw.group_by_length if hw.group_by_length is not None else on_gpu
    fused = hw.fused_optimizer if hw.fused_optimizer is not None else on_gpu
    # data: seeded shuffling so a (config, seed) pair always sees the same batches
    loader = train_loader(tok_ds, tokenizer, batch_size=hp.batch_size, seed=seed, group_by_length=group,
                          on_gpu=on_gpu, num_workers=hw.num_workers)
    # optimizer and one prepare (the scheduler is stepped by hand: a prepared one steps once per process)
    optimizer = _optimizer(model, hp, fused)
    pmodel, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    # fp16: the loss scaler starts where it starts in a fresh process, whatever trained before in this one
    _fresh_scaler(accelerator)
    # lr: linear warmup then linear decay to 0 over the stage's optimizer steps (an epoch's remainder is a step)
    per_epoch = math.ceil(len(loader) / hp.grad_accum)
    total = hp.max_steps if hp.max_steps else max(1, math.ceil(hp.epochs * per_epoch))
    from transformers import get_linear_schedule_with_warmup

    # warmup int(ratio x total) steps; the 🤗 Trainer takes ceil(total x ratio) (one more where the product is not
    # whole): kept, since every committed result and cached stage was trained with it
    sched = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * total), total)
    if progress is not None:
        progress({"step": 0, "total": total})
    pmodel.train()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    micro = MicroBatches(hw.split_on_oom, accelerator.num_processes)
    step, seen, tokens, losses, held = 0, 0, 0, [], []
    t0 = time.perf_counter()
    while step < total:
        for i, batch in enumerate(loader):
            held.append(batch)
            # an epoch's last batches make a step of their own, as 🤗's Trainer does: carried into the next
            # epoch, a grad_accum above the epoch's batches made one step of several epochs ("epochs: 1")
            if len(held) < hp.grad_accum and i < len(loader) - 1:
                continue
            # forward/backward over the step's batches (in micro-batches after an out-of-memory error)
            losses += _backward(accelerator, pmodel, model, held, micro, optimizer, log)
            for b in held:
                seen += b["labels"].size(0) * accelerator.num_processes
                ids = b.get("input_ids")
                tokens += ids.numel() if ids is not None else 0  # this process's (a shape: no device sync)
            held = []
            # step: clip, update, schedule
            _update(accelerator, pmodel, optimizer, hp.max_grad_norm)
            if not accelerator.optimizer_step_was_skipped:  # fp16: the loss scaler skipped it (🤗 Trainer's rule)
                sched.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            # progress: cheap (the callback keeps the latest event; reading the loss is up to it)
            if progress is not None:
                progress({"step": step, "total": total, "loss": losses[-1]})
            if step >= total:
                break
    secs = time.perf_counter() - t0
    tail = torch.stack(losses[-max(1, len(losses) // 10):]).float().mean()
    tail = accelerator.reduce(tail, reduction="mean").item()
    # every process's tokens (their batches pad to their own lengths): one collective, at the stage's end
    tokens = int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), reduction="sum").item())
    _release(accelerator)
    peak = torch.cuda.max_memory_reserved(accelerator.device) / 2**20 if on_gpu else None
    stats = StageStats(task.name, step, seen, float(tail), secs, seen / secs if secs else 0.0, tokens,
                       micro_batches=micro.pieces, peak_gpu_mib=peak)
    if log:
        # QA and tagging train on windows of their examples (a context doc_stride apart, a long sentence cut)
        unit = "windows" if task.kind in (Kind.QA, Kind.TOKEN) else "examples"
        log(f"  {task.name}: {step} steps, {seen} {unit}, loss {tail:.4f}, {secs:.1f}s ({stats.examples_per_s:.0f} {unit}/s)")
    return stats


# --------------------------------------------------------------------------- out of memory: micro-batches
class MicroBatches:
    """How many micro-batches each batch is cut into: 1 until a CUDA out-of-memory error, then twice as
    many at each error, for the rest of the stage. Each micro-batch's loss is weighted by its share of the
    batch's loss terms (labels other than -100: examples, or tokens for tagging), so a step makes the
    update the whole batch would (up to dropout masks and the order of float sums) at the memory of a
    smaller one; the batch size, the learning-rate schedule and the data order stay as configured (the 🤗
    Trainer's ``auto_find_batch_size`` and Accelerate's ``find_executable_batch_size`` halve the batch
    itself, which changes the run). Trials sharing a GPU (fractional ``gpus_per_worker``) are where a long
    stage runs out. Training cuts only in a single-process stage: a rank that repeats a step alone would
    leave the others waiting in the gradient all-reduce."""

    def __init__(self, enabled: bool = True, processes: int = 1):
        self.pieces, self.enabled, self.processes = 1, enabled, processes

    def check(self, rows: int, error: BaseException) -> None:
        """Re-raise ``error`` (inside its ``except`` block) with a note when the batch cannot be cut further."""
        why = ("hardware.split_on_oom is false" if not self.enabled else
               f"a stage of {self.processes} processes is not cut" if self.processes > 1 else
               "one example per micro-batch already" if self.pieces * 2 > rows else None)
        if why is not None:
            error.add_note(f"itt: out of memory at {rows} examples per batch ({why}): lower batch_size or max_length "
                           "and raise grad_accum, or give each trial more of the GPU (search.resources.gpus_per_worker)")
            raise error

    def more(self, rows: int, say) -> None:
        self.pieces *= 2
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        say(f"  out of GPU memory at {rows} examples per batch: going on in {self.pieces} micro-batches per batch "
            "(the same update; hardware.split_on_oom)")


def cap_gpu_memory(share: float, enabled: bool = True) -> float | None:
    """A process holding ``share`` < 1 of a GPU keeps to that share of the GPU's memory
    (``torch.cuda.set_per_process_memory_fraction``). Ray's resources are logical: a fractional GPU limits
    how many trials Ray puts on it, not what each allocates, and Ray's GPU guide leaves keeping to the
    share to the user. Without a cap, one trial's cached memory (a long stage's, kept for the next) can
    starve the others on its GPU at a moment that depends on their timing; with it, a trial runs out
    only of its own share, and its stage goes on in micro-batches (``itt.train.MicroBatches``).
    The fraction is the share less the memory each process holds outside the caching allocator (its CUDA
    context and library workspaces, ``CONTEXT_MIB``): N trials' caps and their N contexts then fit the GPU
    together, so a trial runs out of its own cap (and cuts its batches) before the device runs out.
    Returns the fraction set, or None (no GPU, a whole GPU, or ``search.resources.cap_gpu_memory: false``)."""
    if not enabled or not 0 < share < 1 or not torch.cuda.is_available():
        return None
    total_mib = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 2**20
    fraction = max(share / 2, share - CONTEXT_MIB / total_mib)
    torch.cuda.set_per_process_memory_fraction(fraction)
    return fraction


# what a CUDA process holds outside PyTorch's caching allocator: the context (about 500 MiB with CUDA 12's
# lazy module loading) plus cuBLAS/cuDNN workspaces; the caps of trials sharing a GPU leave it free
CONTEXT_MIB = 1024


def _rows(batch) -> int:
    return len(next(iter(batch.values())))


def _cut(batch, pieces: int) -> list[dict]:
    """``batch`` (a dict of tensors, rows first) as ``pieces`` dicts of consecutive rows (no empty one)."""
    if pieces == 1:
        return [dict(batch)]
    parts = {k: torch.tensor_split(v, pieces) for k, v in batch.items()}
    return [{k: v[j] for k, v in parts.items()} for j in range(pieces) if len(next(iter(parts.values()))[j])]


def _terms(labels: torch.Tensor) -> torch.Tensor:
    """The loss terms a mean-reduced loss averages over: labels other than -100 (a device tensor: no sync)."""
    return (labels != -100).sum()


def _accumulate(accelerator, pmodel, model, batches: list, pieces: int) -> list[torch.Tensor]:
    """Forward and backward over one optimizer step's batches, each in ``pieces`` micro-batches weighted
    by their share of its loss terms; gradients sync across processes on the last only. Returns each
    batch's loss."""
    out, last = [], len(batches) - 1
    for i, batch in enumerate(batches):
        parts = _cut(batch, pieces)
        terms = _terms(batch["labels"]) if pieces > 1 else None
        batch_loss = None
        for j, part in enumerate(parts):
            labels = part.pop("labels")
            sync = i == last and j == len(parts) - 1
            with accelerator.no_sync(pmodel) if not sync else _null():
                with accelerator.autocast():
                    logits = pmodel(**part)
                # each kind's model knows its loss (classification, tags, spans, options)
                loss = (model.loss(logits, labels) if hasattr(model, "loss")
                        else loss_fn(logits, labels, model.regression))
                if terms is not None:
                    loss = loss * (_terms(labels) / terms)
                accelerator.backward(loss / len(batches))
            batch_loss = loss.detach() if batch_loss is None else batch_loss + loss.detach()
        out.append(batch_loss)
    return out


def _backward(accelerator, pmodel, model, batches: list, micro: MicroBatches, optimizer, log) -> list[torch.Tensor]:
    """:func:`_accumulate`; after a CUDA out-of-memory error, the step again in twice as many micro-batches."""
    rows = max(_rows(b) for b in batches)
    while True:
        try:
            return _accumulate(accelerator, pmodel, model, batches, micro.pieces)
        except torch.OutOfMemoryError as e:
            micro.check(rows, e)
        # (outside the except block, whose traceback holds the failed step's activations)
        optimizer.zero_grad(set_to_none=True)
        micro.more(rows, log or _stderr)


def _update(accelerator, pmodel, optimizer, max_grad_norm: float) -> None:
    """Clip and step. Out of GPU memory here (AdamW's state, 2 fp32 values per parameter, is allocated at the
    first step) the step cannot be redone in micro-batches: an update half applied cannot be repeated, so the
    error ends the stage, with a note saying what to change."""
    try:
        accelerator.clip_grad_norm_(pmodel.parameters(), max_grad_norm)
        optimizer.step()
    except torch.OutOfMemoryError as e:
        e.add_note("itt: out of memory in the optimizer step (AdamW keeps 2 fp32 values per parameter, allocated at "
                   "the first step; micro-batches do not shrink them): give each trial more of the GPU "
                   "(search.resources.gpus_per_worker) or train a smaller model")
        raise


def _fresh_scaler(accelerator) -> None:
    """fp16: put the Accelerator's one GradScaler back to its initial state (scale, growth tracker). A chain
    trains every stage, probe, eval.also fine-tune and seed with one Accelerator; its scaler's state carried
    over, so which of a stage's first steps were skipped (the scale calibrating on overflows) depended on what
    had trained before it: a prefix from the stage cache, the probe, the seeds beside it in lockstep changed
    a stage's numbers. The initial state is read at the first stage, before any step."""
    scaler = getattr(accelerator, "scaler", None)
    if scaler is None or not scaler.is_enabled():
        return
    init = getattr(accelerator, "_itt_scaler_init", None)
    if init is None:
        init = accelerator._itt_scaler_init = scaler.state_dict()
    scaler.load_state_dict(init)


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


def _release(accelerator) -> None:
    """Drop Accelerate's references to this stage's model/optimizer/loader so the optimizer state is
    freed by refcount. ``free_memory()`` would add a full ``gc.collect()`` (0.2-0.3 s every stage,
    measured in bench/stage_overhead.py) and empty the CUDA cache the next stage refills."""
    lists = [getattr(accelerator, n, None) for n in ("_models", "_optimizers", "_dataloaders", "_schedulers")]
    if any(not isinstance(x, list) for x in lists):  # Accelerate changed its internals: take the slow path
        accelerator.free_memory()
        return
    for model in lists[0]:
        # mixed precision: prepare() put an autocast forward bound to the model into its __dict__, a
        # reference cycle that keeps a probe's copy (and its GPU memory) until a full GC, and that the
        # next stage's prepare() would wrap again; evaluation autocasts and casts its outputs itself
        if "_original_forward" in getattr(model, "__dict__", {}):
            model.__dict__.pop("forward", None)
            model.__dict__.pop("_original_forward", None)
    for x in lists:
        x.clear()
    if accelerator.mixed_precision == "fp16":  # the grad-scaler patch puts the optimizer in a cycle
        import gc

        gc.collect()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _forward_batches(accelerator, model, tok_ds, tokenizer, batch_size: int):
    """The model's outputs batch by batch over an eval loader (eval mode, autocast; train mode after)."""
    loader = accelerator.prepare(eval_loader(tok_ds, tokenizer, batch_size=batch_size, on_gpu=accelerator.device.type == "cuda"))
    # a model no train_stage prepared in this process (the F baseline of a retrieval target, every stage
    # from the stage cache before `eval.also` or a retrieval probe) is still where it was loaded: the CPU
    model.to(accelerator.device)
    model.eval()
    micro = MicroBatches()
    for batch in loader:
        batch.pop("labels", None)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        yield _outputs(accelerator, model, batch, micro)
    model.train()


def _outputs(accelerator, model, batch: dict, micro: MicroBatches) -> torch.Tensor:
    """The model's outputs for one eval batch; after a CUDA out-of-memory error, in twice as many parts,
    concatenated (exact: a row's output does not depend on the other rows)."""
    while True:
        try:
            with accelerator.autocast():
                if micro.pieces == 1:
                    return model(**batch)
                return torch.cat([model(**part) for part in _cut(batch, micro.pieces)])
        except torch.OutOfMemoryError as e:
            micro.check(_rows(batch), e)
        micro.more(_rows(batch), _stderr)


@torch.no_grad()
def predict(accelerator, model: TaskModel, tok_ds, tokenizer, *, batch_size: int) -> np.ndarray:
    """Predictions in dataset order: class indices, or floats for regression."""
    out = [accelerator.gather_for_metrics(logits.float() if model.regression else logits.argmax(-1)).cpu()
           for logits in _forward_batches(accelerator, model, tok_ds, tokenizer, batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0)


@torch.no_grad()
def predict_raw(accelerator, model, tok_ds, tokenizer, *, batch_size: int) -> list[np.ndarray]:
    """Raw outputs per input row in dataset order: for sequence outputs (tags, spans) the first
    ``len(input_ids)`` positions (the models align outputs to the unpadded sequence)."""
    chunks = []
    for out in _forward_batches(accelerator, model, tok_ds, tokenizer, batch_size):
        out = out.float()
        if out.dim() >= 3:  # [batch, seq, ...]: equal widths across processes before the gather
            out = accelerator.pad_across_processes(out, dim=1, pad_index=0)
        chunks.append(accelerator.gather_for_metrics(out).cpu())
    lengths = [len(x) for x in tok_ds["input_ids"]]
    rows = []
    for c in chunks:
        rows.extend(c.numpy())
    return [r[:n] if r.ndim >= 2 else r for r, n in zip(rows, lengths)]
