"""A content-addressed cache of intermediate-stage encoders, shared by every chain of a search.

Orders that share a prefix (``mnli>anli>sst2`` and ``mnli>anli>qqp``) share the encoder trained on it
when everything else that determines it is equal. :func:`stage_keys` hashes exactly that (model and
its initial weights, tokenizer, per stage: task, the training data actually used, resolved
hyperparameters; the seed; numerics-relevant hardware), and :class:`StageCache` keeps one entry per key:

```
<root>/entries/<key>/model.safetensors   encoder weights after the prefix
<root>/entries/<key>/manifest.json       written LAST: sha256 + size of each file, stage statistics,
                                         training seconds, creation time. No valid manifest = no entry.
<root>/entries/<key>/probes/<pk>.json    probe results after each stage of the prefix, per probe key
<root>/entries/<key>/used                last use (its mtime), for least-recently-used eviction
<root>/leases/<key>                      held while one chain trains the prefix; others wait
```

``root`` is a local or shared folder or an object-store URI (``s3://...``, through ``pyarrow.fs``).
A local lease is created with ``O_EXCL``; on an object store (no exclusive create) a lease is written
and read back, best effort. A lease holder renews it every ``lease_ttl / 4`` seconds; a lease whose
content has not changed for ``lease_ttl`` seconds (by the waiter's own clock, so clock skew between
nodes does not matter) belongs to a dead holder and is taken over.

>>> cache = StageCache("runs/my-search/stage_cache", max_bytes=20 * 2**30)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field

# bump when the entry layout or the key's contents change, and when the code computes different numbers from
# the same key (a stage's training loop, a head, a probe): the old entries are then never found again.
# 2: an epoch's remainder makes its own step (d11ce61), fp16 skipped steps keep the LR schedule, a tagging
# head takes the encoder's dropout, probe keys hold the task options (xtreme_metric, qa_normalization)
# 3: no weight decay on bias-named parameters (XLNet's r_*_bias), a multiple-choice head takes the encoder's dropout
# 4: QA windows start doc_stride context tokens apart (XTREME's), QA decoding keeps a start where it has its most
# context, retrieval's default layer is XTREME's (probes of QA and retrieval targets change)
# 5: settings that only shape the data (max_examples, doc_stride, max_length, data_seed) leave the stage key, which hashes
# the data they give; the tokenizer's fingerprint leaves out the truncation and padding state its last call
# left in it
FORMAT = 5
DATA_ONLY = ("max_examples", "doc_stride", "max_length")  # only shape the training data (its fingerprint; a tiny
# encoder's position table is in its config)

MANIFEST, WEIGHTS, USED = "manifest.json", "model.safetensors", "used"
DIST_WAIT_S = 20 * 60  # longest wait for another chain's lease in a multi-worker trial (then train it too)


class CacheMiss(Exception):
    """An entry that cannot be used (missing, truncated, corrupt); the stage is trained instead."""


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)


def digest(obj) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


# --------------------------------------------------------------------------- what determines a stage
def data_fingerprint(ds) -> str:
    """sha256 of a 🤗 dataset's content (features and every column through Arrow IPC), i.e. of the
    examples actually used after caps and tokenization, not of where they came from."""
    import pyarrow as pa

    if getattr(ds, "_indices", None) is not None:
        ds = ds.flatten_indices()
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    h = hashlib.sha256(canonical(ds.features.to_dict()).encode())
    h.update(str(len(ds)).encode())
    for name in sorted(table.column_names):
        col = table.column(name)
        batch = pa.record_batch([col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)], names=[name])
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as w:
            w.write_batch(batch)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()


def eval_fingerprint(ds, feats) -> str:
    """An eval set's: its model inputs where they are a dataset (classification); for kinds whose inputs
    come as EvalFeatures (windows of tagging and QA, options, retrieval's none), the examples and the
    inputs both (the windows follow from the examples and the tokenizer, both in the key)."""
    from itt.kinds._base import EvalFeatures

    if not isinstance(feats, EvalFeatures):
        return data_fingerprint(feats)
    return digest({"examples": data_fingerprint(ds),
                   "inputs": data_fingerprint(feats.inputs) if feats.inputs is not None else None})


def tokenizer_fingerprint(tok) -> str:
    """A tokenizer trained on the fly is deterministic from its texts: hash what it became."""
    parts = {"class": type(tok).__name__, "padding_side": getattr(tok, "padding_side", None),
             "inputs": list(getattr(tok, "model_input_names", [])),
             "special": {k: str(v) for k, v in sorted(getattr(tok, "special_tokens_map", {}).items())}}
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:  # less the truncation/padding the last call left in it (each call sets its own)
        body = json.loads(backend.to_str())
        body.pop("truncation", None), body.pop("padding", None)
        parts["body"] = canonical(body)
    else:
        parts["body"] = canonical(sorted(tok.get_vocab().items()))
    return digest(parts)


def state_fingerprint(state: dict) -> str:
    import torch

    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def code_fingerprint(encoder) -> dict:
    """sha256 of every .py file beside the modules that define the encoder and its config (remote code is
    copied into one folder per model, its relative imports beside it)."""
    import sys
    from pathlib import Path

    out = {}
    for name in sorted({type(encoder).__module__, type(encoder.config).__module__}):
        f = getattr(sys.modules.get(name), "__file__", None)
        for py in sorted(Path(f).parent.glob("*.py")) if f else []:
            out[f"{name}:{py.name}"] = hashlib.sha256(py.read_bytes()).hexdigest()
    return out


def _task_spec(task) -> dict:
    def dump(src):
        if src is None:
            return None
        # (conllu_multiword: what it changes is in the data's fingerprint; left out, earlier keys stay valid)
        if isinstance(src, dict):
            return {k: v.model_dump(mode="json", exclude={"conllu_multiword"}) for k, v in sorted(src.items())}
        return src.model_dump(mode="json", exclude={"conllu_multiword"})

    return {"name": task.name, "kind": task.kind, "fields": list(task.fields),
            "labels": list(task.labels) if task.labels is not None else None, "language": task.languages[0],
            "train": dump(task.train)}


def _options(task) -> dict:
    """A task's options (xtreme_metric, qa_normalization): they change its scores, so a probe's, but not what
    a stage trains (kept out of the stage key: entries stay shared)."""
    return {k: task.metadata[k] for k in sorted(task.metadata)}


def _memo(p, name: str, fn):
    memo = p.fingerprints
    if name not in memo:
        memo[name] = fn()
    return memo[name]


def hardware_spec(cfg, accelerator) -> dict:
    """Settings that change the numbers: device kind, precision, fused attention, batching order,
    optimizer kernel, DDP world size, CPU threads (reductions are split by thread), and deterministic
    kernels (other CUDA algorithms)."""
    import torch

    on_gpu = accelerator.device.type == "cuda"
    hw = cfg.hardware
    # on a GPU, which one and its libraries (bf16 and attention kernels differ between A100 and H100; a
    # cluster that autoscales may mix them)
    gpu = ({"gpu": torch.cuda.get_device_name(accelerator.device), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()} if on_gpu else {})
    return {**gpu, "device": accelerator.device.type, "mixed_precision": str(accelerator.mixed_precision), "sdpa": hw.sdpa,
            "group_by_length": hw.group_by_length if hw.group_by_length is not None else on_gpu,
            "fused_optimizer": hw.fused_optimizer if hw.fused_optimizer is not None else on_gpu,
            "world_size": accelerator.num_processes, "threads": None if on_gpu else torch.get_num_threads(),
            **({"deterministic": True} if hw.deterministic else {})}  # (absent when off: earlier keys stay valid)


def stage_keys(p, seed: int, encoder, accelerator, pooling: str) -> list[str]:
    """Key of the encoder after each prefix ``order[:i]`` (i = 1..n) for this seed, before any
    stage ran (``encoder`` is the freshly built one)."""
    import accelerate
    import torch
    import transformers

    cfg = p.cfg
    m = cfg.model
    model = {"name": m.name, "revision": m.revision, "tiny": m.tiny.model_dump() if m.tiny else None, "pooling": pooling,
             "config": json.loads(encoder.config.to_json_string(use_diff=False))}
    model["config"].pop("transformers_version", None)
    if m.name is not None:  # pretrained weights: a local folder or a moved Hub revision may change under one name
        model["weights"] = _memo(p, "init", lambda: state_fingerprint(encoder.state_dict()))
    if m.trust_remote_code:  # the model's own code (not transformers'): it changes under one name and revision too
        model["code"] = _memo(p, "code", lambda: code_fingerprint(encoder))
    base = {"format": FORMAT, "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "model": model,
            "tokenizer": _memo(p, "tokenizer", lambda: tokenizer_fingerprint(p.tokenizer)),
            "hardware": hardware_spec(cfg, accelerator), "seed": seed}  # (data_seed: in the data's fingerprint)
    stages, keys = [], []
    for task in p.order:
        stages.append({"task": _task_spec(task), "data": _memo(p, f"train:{task.name}", lambda: data_fingerprint(p.train[task.name])),
                       "hparams": cfg.stage_hparams(task.name).model_dump(mode="json", exclude=set(DATA_ONLY))})
        keys.append(digest({**base, "prefix": stages}))
    return keys


def probe_key(p) -> str:
    """What a probe result depends on besides the encoder (and the probe seed, which follows from the
    chain seed and the stage index, both in the stage key): probe settings, the target, its data,
    hyperparameters, the probe languages and their dev data, evaluation settings."""
    cfg, t = p.cfg, p.target

    def compute():
        return digest({"format": FORMAT, "steps": cfg.probe.steps, "max_eval_examples": cfg.probe.max_eval_examples,
                       "target": _task_spec(t), "metric": t.metric, "options": _options(t),
                       "train": data_fingerprint(p.train[t.name]) if t.name in p.train else None,
                       "hparams": cfg.stage_hparams(None).model_dump(mode="json"),
                       "dev": {lang: eval_fingerprint(ds, feats) for lang, (ds, feats) in sorted(p.probe.items())},
                       "eval": {"batch_size": cfg.eval.batch_size, "qa": cfg.eval.qa.model_dump(),
                                "retrieval": cfg.eval.retrieval.model_dump()},
                       **({"also": _probe_also_part(p)} if p.probe_also else {})})

    return _memo(p, "probe", compute)


def _probe_also_part(p) -> dict:
    """``probe.also``: each eval.also task, its train data and hyperparameters, and its probe dev sets."""
    out = {}
    for name, sets in sorted(p.probe_also.items()):
        t = p.also[name][0]
        out[name] = {"task": _task_spec(t), "xtreme_metric": t.xtreme_metric, "options": _options(t),
                     "train": data_fingerprint(p.also_train[name]) if name in p.also_train else None,
                     "hparams": p.cfg.also_hparams(name).model_dump(mode="json"),
                     "dev": {lang: eval_fingerprint(ds, feats) for lang, (ds, feats) in sorted(sets.items())}}
    return out


# --------------------------------------------------------------------------- the store
@dataclass
class Entry:
    key: str
    manifest: dict

    @property
    def stages(self) -> list[dict]:
        return self.manifest["stages"]


@dataclass
class CacheStats:
    hits: int = 0  # stages taken from the cache
    misses: int = 0  # stages trained (and published)
    seconds_saved: float = 0.0  # training (and probe) seconds the hits did not spend
    corrupt: int = 0  # entries found damaged and discarded
    evicted: int = 0
    swept: int = 0  # half-written entries removed

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _holder() -> dict:
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def _holder_dead(body: bytes) -> bool:
    """A lease taken on this machine by a process that no longer exists (no need to wait for its TTL)."""
    import socket

    try:
        d = json.loads(body)
        if d.get("host") != socket.gethostname() or not d.get("pid"):
            return False
        os.kill(int(d["pid"]), 0)
        return False
    except ProcessLookupError:
        return True
    except Exception:
        return False


@dataclass
class Lease:
    """Held while a prefix is trained; a thread renews it so waiters know the holder is alive."""

    cache: StageCache
    key: str
    token: str
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Lease:
        def beat():
            n = 0
            while not self._stop.wait(self.cache.lease_ttl / 4):
                n += 1
                try:
                    body = self.cache._read(self.cache._lease_path(self.key))
                    if body is None or json.loads(body).get("token") != self.token:
                        return  # taken over (we were silent too long): never overwrite the new holder's lease
                    self.cache._write_lease(self.key, self.token, n)
                except Exception:
                    pass

        self._thread = threading.Thread(target=beat, daemon=True, name=f"itt-lease-{self.key[:8]}")
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            body = self.cache._read(self.cache._lease_path(self.key))
            if body is not None and json.loads(body).get("token") == self.token:
                self.cache._delete(self.cache._lease_path(self.key))
        except Exception:
            pass


class StageCache:
    """Stage checkpoints and probe results by content key, in a folder or an object store.

    ``get``/``put`` are the two operations a chain needs; ``claim`` adds the waiting: it returns an
    entry when one exists, else a lease to train the prefix under (or None after ``wait_s``)."""

    def __init__(self, location: str, *, max_bytes: int | None = None, lease_ttl: float = 60.0, wait_s: float = 6 * 3600,
                 poll_s: float = 0.5, filesystem=None, log=None):
        import pyarrow.fs as pafs

        self.location = location
        if filesystem is not None:
            self.fs, self.base = filesystem, location.rstrip("/")
        elif "://" in location and not location.startswith("file://"):
            self.fs, base = pafs.FileSystem.from_uri(location)
            self.base = base.rstrip("/")
        else:
            self.fs = pafs.LocalFileSystem()
            self.base = os.path.abspath(location[len("file://"):] if location.startswith("file://") else location)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.max_bytes, self.lease_ttl, self.wait_s, self.poll_s = max_bytes, lease_ttl, wait_s, poll_s
        self.log = log or (lambda *a: None)
        self.stats = CacheStats()

    # ------------------------------------------------------------------ low-level file operations
    def _p(self, *rel: str) -> str:
        return "/".join([self.base, *rel])

    def _entry(self, key: str, *rel: str) -> str:
        return self._p("entries", key, *rel)

    def _lease_path(self, key: str) -> str:
        return self._p("leases", key)

    def _read(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:  # some stores raise a plain OSError for a missing object
            msg = str(e).lower()
            if "not found" in msg or "does not exist" in msg or "no such" in msg:
                return None
            raise

    def _write(self, path: str, data: bytes) -> None:
        """Atomic: a local file is written beside its target and renamed; an object PUT is atomic."""
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        if self.local:
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                with open(tmp, "wb") as f:  # no fsync: after a crash, a torn file fails its checksum
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.remove(tmp)  # (a full disk: the partial file goes at once)
                raise
            return
        with self.fs.open_output_stream(path) as f:
            f.write(data)

    def _delete(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except (FileNotFoundError, OSError):
            pass

    # ------------------------------------------------------------------ entries
    def get(self, key: str) -> Entry | None:
        """The entry of ``key`` when its manifest is complete and valid (files are checked on load)."""
        body = self._read(self._entry(key, MANIFEST))
        if body is None:
            return None
        try:
            man = json.loads(body)
            if man.get("key") != key or man.get("format") != FORMAT or WEIGHTS not in man["files"]:
                raise ValueError("manifest of another key or format")
        except (ValueError, KeyError, TypeError):
            self._discard(key, "unreadable manifest")
            return None
        return Entry(key, man)

    def load(self, entry: Entry) -> dict:
        """The entry's encoder weights, after checking size and sha256; raises CacheMiss (and removes
        the entry) when they do not match: a damaged entry is retrained, never loaded."""
        from safetensors.torch import load as st_load

        spec = entry.manifest["files"][WEIGHTS]
        data = self._read(self._entry(entry.key, WEIGHTS))
        if data is None:  # a manifest without its weights (a writer's overwrite raced a reader's discard, a file
            # deleted by hand): discarded, or SeedCache._claim finds the same entry again, forever
            self._discard(entry.key, "weights missing")
            raise CacheMiss(f"{entry.key[:12]}: weights missing")
        if len(data) != spec["size"] or hashlib.sha256(data).hexdigest() != spec["sha256"]:
            self._discard(entry.key, f"checksum mismatch ({len(data)} bytes, {spec['size']} expected)")
            raise CacheMiss(f"{entry.key[:12]}: corrupt")
        self.touch(entry.key)
        return st_load(data)

    def put(self, key: str, state: dict, *, stages: list[dict], seconds: float, info: dict | None = None) -> None:
        """Publish the encoder weights after a prefix: files first, the manifest last."""
        from safetensors.torch import save as st_save

        if self.get(key) is not None:  # someone published it meanwhile (a waiter that gave up): keep theirs
            return
        data = st_save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()})
        self._write(self._entry(key, WEIGHTS), data)
        man = {"format": FORMAT, "key": key, "created": time.time(), "seconds": seconds, "stages": stages,
               "files": {WEIGHTS: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}, "info": info or {}}
        self._write(self._entry(key, MANIFEST), canonical(man).encode())
        self.touch(key)
        scan = self._scan()  # one listing of the cache for both (an object store lists slowly)
        self.sweep(scan)
        self.evict(protect={key}, scan=scan)

    def get_probes(self, key: str, pkey: str) -> list[dict] | None:
        """Probe results after each stage of the prefix (``[{"probe": ..., "seconds": ...}, ...]``)."""
        body = self._read(self._entry(key, "probes", f"{pkey}.json"))
        if body is None:
            return None
        try:
            rec = json.loads(body)
            if hashlib.sha256(canonical(rec["probes"]).encode()).hexdigest() != rec["sha256"]:
                raise ValueError("checksum")
            return rec["probes"]
        except (ValueError, KeyError, TypeError):
            self.stats.corrupt += 1
            self._delete(self._entry(key, "probes", f"{pkey}.json"))
            return None

    def put_probes(self, key: str, pkey: str, probes: list[dict]) -> None:
        rec = {"probes": probes, "sha256": hashlib.sha256(canonical(probes).encode()).hexdigest()}
        self._write(self._entry(key, "probes", f"{pkey}.json"), canonical(rec).encode())

    def touch(self, key: str) -> None:
        try:
            self._write(self._entry(key, USED), str(time.time()).encode())
        except OSError:
            pass

    def _discard(self, key: str, why: str) -> None:
        self.stats.corrupt += 1
        self.log(f"stage cache: entry {key[:12]} discarded ({why}); the stage is trained again")
        self.remove(key)

    def remove(self, key: str) -> None:
        """The manifest goes first, so a half-removed entry no longer exists for readers."""
        self._delete(self._entry(key, MANIFEST))
        try:
            self.fs.delete_dir(self._entry(key))
        except (FileNotFoundError, OSError):
            pass

    # ------------------------------------------------------------------ leases
    def _write_lease(self, key: str, token: str, beat: int) -> None:
        self._write(self._lease_path(key), canonical({"token": token, "beat": beat, "time": time.time(), **_holder()}).encode())

    def _try_lease(self, key: str) -> Lease | None:
        token = uuid.uuid4().hex
        body = canonical({"token": token, "beat": 0, "time": time.time(), **_holder()}).encode()
        path = self._lease_path(key)
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return None
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            return Lease(self, key, token).start()
        if self._read(path) is not None:
            return None
        self._write(path, body)  # no exclusive create on an object store: write, wait, read back
        time.sleep(min(1.0, self.poll_s))
        got = self._read(path)
        if got is not None and json.loads(got).get("token") == token:
            return Lease(self, key, token).start()
        return None

    def _break_lease(self, key: str) -> None:
        """Remove a stale lease (its holder died); on a local folder only one waiter's rename wins."""
        path = self._lease_path(key)
        if self.local:
            try:
                os.rename(path, f"{path}.stale.{uuid.uuid4().hex[:8]}")
            except FileNotFoundError:
                return
            for name in os.listdir(os.path.dirname(path)):
                if name.startswith(f"{key}.stale."):
                    try:
                        os.remove(os.path.join(os.path.dirname(path), name))
                    except FileNotFoundError:
                        pass
            return
        self._delete(path)

    def lease_held(self, key: str) -> bool:
        return self._read(self._lease_path(key)) is not None

    def claim(self, key: str, wait_s: float | None = None) -> tuple[Entry | None, Lease | None]:
        """``(entry, None)`` when the prefix is cached (perhaps after waiting for the chain training
        it), ``(None, lease)`` when this caller trains it, ``(None, None)`` after ``wait_s`` seconds
        of waiting for a live holder (train anyway; the first published entry is kept)."""
        t0 = time.monotonic()
        seen, since = None, time.monotonic()
        announced = False
        while True:
            entry = self.get(key)
            if entry is not None:
                return entry, None
            lease = self._try_lease(key)
            if lease is not None:
                entry = self.get(key)  # published between our look and our lease
                if entry is not None:
                    lease.release()
                    return entry, None
                return None, lease
            body = self._read(self._lease_path(key))
            if body is not None and _holder_dead(body):  # e.g. a search driver SIGKILLed on this machine
                self.log(f"stage cache: lease on {key[:12]} was held by a process that is gone; taking over")
                self._break_lease(key)
                seen, since = None, time.monotonic()
                continue
            if body != seen:
                seen, since = body, time.monotonic()
            elif time.monotonic() - since > self.lease_ttl:
                self.log(f"stage cache: lease on {key[:12]} is stale (holder gone); taking over")
                self._break_lease(key)
                seen, since = None, time.monotonic()
                continue
            if time.monotonic() - t0 > (self.wait_s if wait_s is None else wait_s):
                return None, None
            if not announced:
                self.log(f"stage cache: {key[:12]} is being trained by another chain; waiting for it")
                announced = True
            time.sleep(self.poll_s)

    # ------------------------------------------------------------------ size and eviction
    def _scan(self) -> dict[str, dict]:
        """Every entry folder: key, bytes, last use, newest file time, complete (has a manifest)."""
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self._p("entries"), recursive=True, allow_not_found=True))
        except (FileNotFoundError, OSError):
            return {}
        per: dict[str, dict] = {}
        root = self._p("entries") + "/"
        for fi in infos:
            if fi.type != pafs.FileType.File or not fi.path.startswith(root):
                continue
            rel = fi.path[len(root):]
            key, _, name = rel.partition("/")
            e = per.setdefault(key, {"key": key, "bytes": 0, "used": 0.0, "newest": 0.0, "complete": False})
            e["bytes"] += fi.size or 0
            if name == MANIFEST:
                e["complete"] = True
            if fi.mtime is not None:
                e["newest"] = max(e["newest"], fi.mtime.timestamp())
                if name in (USED, MANIFEST):
                    e["used"] = max(e["used"], fi.mtime.timestamp())
        return per

    def entries(self, scan: dict[str, dict] | None = None) -> list[dict]:
        """Every complete entry: key, bytes, last use (seconds since the epoch)."""
        return [e for e in (self._scan() if scan is None else scan).values() if e["complete"]]

    def sweep(self, scan: dict[str, dict] | None = None) -> list[str]:
        """Remove half-written entries: files without a manifest (a writer died inside ``put``),
        untouched for longer than the lease TTL, and whose lease is gone, stale (no heartbeat for 3
        TTLs) or held by a process that no longer exists on this machine. Runs after every ``put``."""
        now, gone = time.time(), []
        for e in (self._scan() if scan is None else scan).values():
            if e["complete"] or now - e["newest"] < self.lease_ttl:
                continue
            body = self._read(self._lease_path(e["key"]))
            if body is not None:
                try:
                    beat = float(json.loads(body).get("time", 0))
                except (ValueError, TypeError, AttributeError):
                    beat = 0.0
                if not _holder_dead(body) and now - beat < 3 * self.lease_ttl:
                    continue  # a live writer
            self.remove(e["key"])
            gone.append(e["key"])
        self.stats.swept += len(gone)
        if gone:
            self.log(f"stage cache: removed {len(gone)} half-written entries (their writers are gone)")
        return gone

    def size(self) -> int:
        return sum(e["bytes"] for e in self.entries())

    def evict(self, protect: set[str] = frozenset(), scan: dict[str, dict] | None = None) -> list[str]:
        """Least-recently-used complete entries go until the cache fits ``max_bytes``; an entry whose
        lease is held (being re-published) or that is protected stays. (``scan``: a listing taken
        after the last publish; ``sweep`` removes only incomplete entries, so its listing serves.)"""
        if self.max_bytes is None:
            return []
        ents = self.entries(scan)
        total = sum(e["bytes"] for e in ents)
        gone = []
        for e in sorted(ents, key=lambda e: (e["used"], e["key"])):
            if total <= self.max_bytes:
                break
            if e["key"] in protect or self.lease_held(e["key"]):
                continue
            self.remove(e["key"])
            total -= e["bytes"]
            gone.append(e["key"])
        self.stats.evicted += len(gone)
        if gone:
            self.log(f"stage cache: evicted {len(gone)} least-recently-used entries (limit {self.max_bytes} bytes)")
        return gone


def stats_line(stats: dict) -> str:
    return (f"stage cache: {int(stats.get('hits', 0))} hits, {int(stats.get('misses', 0))} misses, "
            f"~{float(stats.get('seconds_saved', 0.0)):.0f} s of training saved")


# --------------------------------------------------------------------------- one seed of one chain
def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _bcast(obj):
    """Rank 0's value on every rank (all ranks must take the same cache decision)."""
    if not _distributed():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class SeedCache:
    """The cache as one seed of a chain uses it, stage by stage (see ``itt.chain._seed_steps``).

    Rank 0 reads and publishes; its decisions and loaded weights are broadcast, so every Ray Train
    worker trains, or skips, the same stages. The first lookup takes the longest cached prefix at
    once (only its weights are read; earlier stages' figures come from its manifest)."""

    def __init__(self, cache: StageCache, p, seed: int, encoder, accelerator, pooling: str, log=None):
        self.cache, self.accelerator = cache, accelerator
        self.main = accelerator.is_main_process
        self.log = log or (lambda *a: None)
        self.keys = _bcast(stage_keys(p, seed, encoder, accelerator, pooling) if self.main else None)
        self.pkey = (_bcast(probe_key(p) if self.main else None)) if p.cfg.probe.enabled else None
        self.history: list[dict] = []  # stage statistics 1..i
        self.probes: list[dict] = []  # {"probe", "seconds"} per stage 1..i (probe enabled)
        self.resumed: list[tuple[dict, dict | None]] = []  # the longest cached prefix's stages
        self.lease: Lease | None = None
        self.trained_now = False
        self.last_hit_probe_seconds = 0.0  # the cached probe's seconds of the stage last loaded (hit)
        self.trained, self.from_cache, self.seconds_saved = 0, 0, 0.0

    # rank 0's side ------------------------------------------------------------------
    def _longest(self) -> tuple[int, dict | None, list[dict], list[dict] | None]:
        for j in range(len(self.keys), 0, -1):
            entry = self.cache.get(self.keys[j - 1])
            if entry is None:
                continue
            probes = self.cache.get_probes(entry.key, self.pkey) if self.pkey else None
            if self.pkey and probes is None:
                continue  # the encoder is there but not this probe: a shorter prefix may have both
            try:
                return j, self.cache.load(entry), entry.stages, probes
            except CacheMiss:
                continue
        return 0, None, [], None

    def _claim(self, i: int) -> tuple[dict | None, dict | None, list[dict] | None]:
        # the other ranks wait in a broadcast meanwhile: stay under the process group's timeout (30 min)
        wait = min(self.cache.wait_s, DIST_WAIT_S) if _distributed() else None
        while True:
            entry, lease = self.cache.claim(self.keys[i - 1], wait_s=wait)
            if entry is None:
                self.lease = lease
                return None, None, None
            try:
                state = self.cache.load(entry)
            except CacheMiss:
                continue  # discarded: claim again (this time we train it)
            probes = self.cache.get_probes(entry.key, self.pkey) if self.pkey else None
            return state, entry.stages, probes

    def _load_weights(self, encoder, state) -> None:
        import torch

        if state is not None:
            encoder.load_state_dict(state)
        if _distributed():
            import torch.distributed as dist

            dev = self.accelerator.device
            with torch.no_grad():
                for t in encoder.state_dict().values():
                    buf = t.to(dev) if t.device != dev and dev.type == "cuda" else t
                    dist.broadcast(buf, src=0)
                    if buf is not t:
                        t.copy_(buf)

    # the chain's side -----------------------------------------------------------------
    def stage(self, i: int, encoder) -> tuple[dict, dict | None] | None:
        """Before stage i: ``(statistics, probe or None)`` when the encoder after stage i is taken
        from the cache (then loaded into ``encoder``), None when stage i must be trained."""
        if i == 1:  # the longest cached prefix, directly
            j, state, stages, probes = self._longest() if self.main else (0, None, [], None)
            j, stages, probes = _bcast((j, stages, probes))
            if j:
                self._load_weights(encoder, state)
                self.resumed = [(stages[k], probes[k] if probes else None) for k in range(j)]
                self.log(f"  stage cache: prefix of {j} stage(s) loaded ({self.keys[j - 1][:12]})")
        if i <= len(self.resumed):
            return self._hit(*self.resumed[i - 1])
        state, stages, probes = self._claim(i) if self.main else (None, None, None)
        stages, probes = _bcast((stages, probes))
        if stages is None:
            self.trained_now = True
            return None
        self._load_weights(encoder, state)
        self.log(f"  stage cache: stage {i} loaded ({self.keys[i - 1][:12]})")
        return self._hit(stages[i - 1], probes[i - 1] if probes else None)

    def _hit(self, stat: dict, probe: dict | None) -> tuple[dict, dict | None]:
        self.trained_now = False
        self.from_cache += 1
        saved = float(stat.get("seconds", 0.0)) + (float(probe["seconds"]) if probe else 0.0)
        self.last_hit_seconds = saved  # what the stage cost when it was trained (training + probe)
        self.last_hit_probe_seconds = float(probe["seconds"]) if probe else 0.0
        self.seconds_saved += saved
        self.cache.stats.hits += 1
        self.cache.stats.seconds_saved += saved
        return stat, (probe["probe"] if probe else None)

    def done(self, i: int, encoder, stat: dict, probe: dict | None, probe_seconds: float, probe_new: bool) -> None:
        """After stage i (and its probe): publish what this chain computed; release the lease."""
        self.history.append(stat)
        if self.pkey:  # (a probe from the cache keeps the seconds it took: a longer prefix's entry carries them)
            seconds = probe_seconds if self.trained_now or probe_new else self.last_hit_probe_seconds
            self.probes.append({"probe": probe, "seconds": seconds})
        key = self.keys[i - 1]
        if self.trained_now:
            self.trained += 1
            self.cache.stats.misses += 1
        try:
            if self.main and self.trained_now:
                self.cache.put(key, encoder.state_dict(), stages=list(self.history), seconds=float(stat.get("seconds", 0.0)),
                               info={"task": stat.get("task"), "stage": i})
            if self.main and self.pkey and (self.trained_now or probe_new):
                self.cache.put_probes(key, self.pkey, list(self.probes))
        except OSError as e:  # the cache is an optimisation: a full or unwritable store must not end the chain
            self.log(f"  stage cache: could not publish stage {i} ({key[:12]}): {e}; the chain goes on without it")
        finally:
            if self.lease is not None:
                self.lease.release()
                self.lease = None

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None
