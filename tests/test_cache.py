"""The stage cache (itt/cache.py): same numbers with and without it, one training per distinct prefix,
damaged entries retrained, LRU eviction, keys, leases under a race, an S3 store."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import replace
from itertools import permutations
from pathlib import Path

import pytest
import torch

from itt.cache import MANIFEST, WEIGHTS, StageCache, probe_key, stage_keys
from itt.chain import prepare, run_chain
from itt.config import validate
from itt.models import build_encoder, pooling_for
from itt.train import make_accelerator
from tests.conftest import TINY, _merge
from tests.test_storage import s3  # noqa: F401  (the moto S3 server fixture)

TOY3 = ["toy_topic", "toy_length", "toy_align"]
# small, but the target learns something: final scores differ between orders, so "identical" means something
RAW = _merge(TINY, {"order": TOY3, "train": {"lr": 3e-3, "max_steps": 5}, "finetune": {"max_steps": 40, "lr": 5e-3},
                    "probe": {"enabled": True, "steps": 4, "max_eval_examples": 24}, "toy": {"n_train": 96, "n_eval": 48}})
COUNTS = ("stages_trained", "stages_from_cache", "cache_seconds_saved", "stage_seconds", "trained_seconds")  # and timings


def quiet(*a):
    pass


@pytest.fixture(scope="module")
def base():
    cfg = validate(RAW, "test")
    return cfg, prepare(cfg, log=quiet)


def _chain(base, order, cache=None):
    """run_chain on one order, reusing the module's prepared data (the tasks' features do not depend on the order)."""
    cfg, p = base
    c = cfg.model_copy(update={"order": list(order)})
    q = replace(p, cfg=c, order=[next(t for t in p.order if t.name == n) for n in order])
    reports = []
    res = run_chain(c, prepared=q, log=quiet, cache=cache, report=lambda m, s: reports.append(dict(m)))
    return res, reports


def _strip(reports):
    return [{k: v for k, v in m.items() if k not in COUNTS} for m in reports]


def test_exhaustive_sweep_same_numbers_with_and_without_cache(base, tmp_path):
    """Point 7: every order's reports (probes, losses, final metrics) are identical; stage trainings
    executed = distinct prefixes (3 + 6 = 9 for the 6 orders of length 2, 12 without the cache)."""
    orders = list(permutations(TOY3, 2))
    plain = {o: _chain(base, o) for o in orders}
    cache = StageCache(str(tmp_path / "c"))
    cached = {o: _chain(base, o, cache) for o in orders}
    finals = {plain[o][1][-1]["test_accuracy_mean"] for o in orders}
    assert len(finals) > 2  # the orders really differ: equality below is not trivial
    for o in orders:
        (ra, a), (rb, b) = plain[o], cached[o]
        assert _strip(a) == _strip(b), o
        # the target fine-tune's loss depends on every weight of the encoder it started from
        assert ra["seeds"]["0"]["stages"][-1]["train_loss"] == rb["seeds"]["0"]["stages"][-1]["train_loss"]
        assert ra["seeds"]["0"]["test"] == rb["seeds"]["0"]["test"]
    assert sum(plain[o][1][-1]["stages_trained"] for o in orders) == 12
    assert sum(cached[o][1][-1]["stages_trained"] for o in orders) == 9 == cache.stats.misses
    assert sum(cached[o][1][-1]["stages_from_cache"] for o in orders) == 3 == cache.stats.hits
    assert len(cache.entries()) == 9
    # a second pass trains nothing and still reports the same figures (stage reports included)
    again = StageCache(str(tmp_path / "c"))
    for o in orders[:2]:
        _, r = _chain(base, o, again)
        assert _strip(r) == _strip(plain[o][1]) and r[-1]["stages_trained"] == 0 and r[-1]["stages_from_cache"] == 2
        assert r[-1]["cache_seconds_saved"] > 0 and r[0]["stages_from_cache"] == 1  # running counts per report
    # the longest prefix is taken directly: toy_topic>toy_length>toy_align loads the pair, trains one stage
    _, r = _chain(base, TOY3, again)
    assert r[-1]["stages_trained"] == 1 and r[-1]["stages_from_cache"] == 2
    # a stage's seconds (what the searcher's cost model learns): measured when trained, carried by the entry
    # when loaded, so every report of one prefix says the same; a chain's trained_seconds sums its own
    secs = {}
    for o in orders:
        for i, m in enumerate(cached[o][1][:-1], start=1):
            assert m["stage_seconds"] > 0
            assert secs.setdefault(o[:i], m["stage_seconds"]) == m["stage_seconds"], o[:i]
    assert r[0]["stage_seconds"] == secs[tuple(TOY3[:1])] and r[1]["stage_seconds"] == secs[tuple(TOY3[:2])]
    assert r[-1]["trained_seconds"] == r[2]["stage_seconds"]  # the one stage it trained
    assert sum(plain[o][1][-1]["trained_seconds"] for o in orders) == pytest.approx(
        sum(m["stage_seconds"] for o in orders for m in plain[o][1][:-1]))



def test_a_probe_from_the_cache_keeps_its_seconds_in_a_longer_prefixs_entry(base, tmp_path):
    """A stage taken from the cache and then extended: the longer prefix's entry recorded that stage's probe at
    0 s, so a chain loading it reported stage 1 at its training seconds alone (0.04 s for 1.27 s with its probe):
    stage_seconds, what the searcher's cost model learns, and cache_seconds_saved were too low."""
    cache = StageCache(str(tmp_path / "c"))
    _, first = _chain(base, ("toy_topic", "toy_length"), cache)  # trains and probes toy_topic
    _, second = _chain(base, ("toy_topic", "toy_align"), cache)  # toy_topic from the cache, toy_align trained
    _, third = _chain(base, ("toy_topic", "toy_align", "toy_length"), cache)  # loads the (toy_topic, toy_align) entry
    assert third[-1]["stages_from_cache"] == 2
    topic, align = first[0]["stage_seconds"], second[1]["stage_seconds"]
    assert topic > 0 and align > 0 and second[0]["stage_seconds"] == topic
    assert third[0]["stage_seconds"] == topic and third[1]["stage_seconds"] == align
    assert third[1]["cache_seconds_saved"] == pytest.approx(topic + align)

def _entry_dir(cache: StageCache, key: str) -> Path:
    return Path(cache.base) / "entries" / key


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_entry_is_retrained_not_loaded(base, tmp_path, damage):
    order = ("toy_topic", "toy_length")
    cache = StageCache(str(tmp_path / "c"))
    _, first = _chain(base, order, cache)
    entries = sorted(cache.entries(), key=lambda e: e["bytes"])
    keys = [e["key"] for e in cache.entries()]
    assert len(keys) == 2
    # damage both weights files: a truncated copy, or a flipped byte at the same size
    for k in keys:
        f = _entry_dir(cache, k) / WEIGHTS
        data = bytearray(f.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        else:
            data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
    msgs = []
    c2 = StageCache(str(tmp_path / "c"), log=msgs.append)
    _, second = _chain(base, order, c2)
    assert c2.stats.corrupt == 2 and c2.stats.hits == 0 and c2.stats.misses == 2
    assert second[-1]["stages_trained"] == 2 and _strip(second) == _strip(first)
    assert any("discarded" in m for m in msgs)
    for k in keys:  # republished, intact again
        f = _entry_dir(cache, k) / WEIGHTS
        man = json.loads((_entry_dir(cache, k) / MANIFEST).read_text())
        assert hashlib.sha256(f.read_bytes()).hexdigest() == man["files"][WEIGHTS]["sha256"]
    assert entries


def test_half_written_entry_does_not_exist(tmp_path):
    """Weights without a manifest (a writer died before publishing) are no entry; nor is a bad manifest."""
    cache = StageCache(str(tmp_path / "c"))
    d = _entry_dir(cache, "k1")
    d.mkdir(parents=True)
    (d / WEIGHTS).write_bytes(b"partial")
    assert cache.get("k1") is None and cache.entries() == []
    cache.put("k2", {"w": torch.ones(3)}, stages=[{"task": "t", "seconds": 1.0}], seconds=1.0)
    (_entry_dir(cache, "k2") / MANIFEST).write_text('{"format": 1, "key": "k2", "fi')  # truncated manifest
    assert cache.get("k2") is None and not _entry_dir(cache, "k2").exists()


def test_half_written_entries_of_gone_writers_are_swept(tmp_path):
    """Files without a manifest whose writer is gone are removed at the next publish; a fresh one, or
    one whose writer still holds a live lease, stays (it may be mid-write)."""
    import json
    import os
    import socket

    cache = StageCache(str(tmp_path / "c"), lease_ttl=60.0)
    old = time.time() - 600

    def half(key):
        d = _entry_dir(cache, key)
        d.mkdir(parents=True)
        (d / WEIGHTS).write_bytes(b"partial")
        return d

    def lease(key, body):
        path = cache._lease_path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(json.dumps(body))

    orphan, fresh, live, stale, dead = half("orphan"), half("fresh"), half("live"), half("stale"), half("dead")
    for d in (orphan, live, stale, dead):
        os.utime(d / WEIGHTS, (old, old))
    lease("live", {"token": "x", "beat": 9, "time": time.time(), "host": socket.gethostname(), "pid": os.getpid()})
    lease("stale", {"token": "y", "beat": 1, "time": old, "host": "elsewhere", "pid": 1})
    lease("dead", {"token": "z", "beat": 1, "time": time.time(), "host": socket.gethostname(), "pid": 2**22 + 12345})
    cache.put("k", {"w": torch.ones(3)}, stages=[], seconds=1.0)
    assert not orphan.exists() and not stale.exists() and not dead.exists()
    assert fresh.exists() and live.exists() and cache.stats.swept == 3
    assert [e["key"] for e in cache.entries()] == ["k"]


def test_lru_eviction_under_a_byte_limit(tmp_path):
    state = {"w": torch.arange(4000, dtype=torch.float32)}  # ~16 kB per entry
    cache = StageCache(str(tmp_path / "c"))
    cache.put("a", state, stages=[], seconds=1.0)
    one = cache.size()
    cache.max_bytes = int(2.5 * one)  # room for two entries
    cache.put("b", state, stages=[], seconds=1.0)
    time.sleep(0.05)
    cache.load(cache.get("a"))  # a is used again: b is now the least recently used
    time.sleep(0.05)
    cache.put("c", state, stages=[], seconds=1.0)
    assert {e["key"] for e in cache.entries()} == {"a", "c"} and cache.stats.evicted == 1
    assert cache.size() <= cache.max_bytes
    # an entry whose lease is held is never evicted, even when it is the least recently used
    lease = cache._try_lease("a")
    time.sleep(0.05)
    cache.put("d", state, stages=[], seconds=1.0)
    lease.release()
    assert {e["key"] for e in cache.entries()} == {"a", "d"}


def test_two_chains_racing_for_one_prefix_train_it_once(tmp_path):
    """Four threads claim the same key at once: one trains (holds the lease), the others wait, then
    load what it published."""
    cache_dir = str(tmp_path / "c")
    trained, loaded = [], []
    barrier = threading.Barrier(4)

    def chain(i):
        c = StageCache(cache_dir, poll_s=0.05)
        barrier.wait()
        entry, lease = c.claim("prefix")
        if lease is not None:
            time.sleep(0.5)  # "training"
            c.put("prefix", {"w": torch.full((4,), float(i))}, stages=[{"task": "t", "seconds": 0.5}], seconds=0.5)
            lease.release()
            trained.append(i)
        else:
            loaded.append((i, c.load(entry)["w"][0].item()))

    threads = [threading.Thread(target=chain, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(trained) == 1 and len(loaded) == 3
    assert all(v == float(trained[0]) for _, v in loaded)
    assert not (Path(cache_dir) / "leases" / "prefix").exists()


def test_stale_lease_is_taken_over(tmp_path):
    """A holder that died leaves a lease nobody renews: a waiter takes over after lease_ttl."""
    dead = StageCache(str(tmp_path / "c"))
    lease = dead._try_lease("k")
    lease._stop.set()  # the holder "dies": no more heartbeats, the lease file stays
    assert (Path(dead.base) / "leases" / "k").exists()
    msgs = []
    c = StageCache(str(tmp_path / "c"), lease_ttl=0.4, poll_s=0.05, log=msgs.append)
    t0 = time.monotonic()
    entry, mine = c.claim("k")
    assert entry is None and mine is not None and 0.3 < time.monotonic() - t0 < 5
    assert any("stale" in m for m in msgs)
    mine.release()
    # a live holder's lease is renewed, so a waiter keeps waiting (here: until wait_s)
    live = StageCache(str(tmp_path / "c"), lease_ttl=0.2)._try_lease("k2")
    c2 = StageCache(str(tmp_path / "c"), lease_ttl=0.2, poll_s=0.05, wait_s=1.0)
    assert c2.claim("k2") == (None, None)
    live.release()


def test_lease_of_a_dead_process_on_this_machine_is_taken_over_at_once(tmp_path):
    """After a SIGKILLed search the resumed trial need not wait out the lease TTL: the lease names its
    host and pid, and a pid that no longer exists on this host frees it at once."""
    import json
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = Path(StageCache(str(tmp_path / "c")).base) / "leases" / "k"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"token": "t", "beat": 3, "time": time.time(), "host": socket.gethostname(),
                                "pid": int(gone.stdout)}))
    msgs = []
    c = StageCache(str(tmp_path / "c"), lease_ttl=600, poll_s=0.05, log=msgs.append)
    t0 = time.monotonic()
    entry, mine = c.claim("k")
    assert entry is None and mine is not None and time.monotonic() - t0 < 5
    assert any("gone" in m for m in msgs)
    body = json.loads(path.read_text())
    assert body["pid"] == os.getpid() and body["host"] == socket.gethostname()
    mine.release()


def test_keys_follow_what_determines_the_encoder(base, monkeypatch):
    cfg, p = base
    acc = make_accelerator(cfg.hardware)

    def keys(overrides: dict | None = None, seed: int = 0, prepared=None):
        c = validate(_merge(RAW, overrides or {}), "test")
        q = prepared or prepare(c, log=quiet)
        torch.manual_seed(seed)
        enc = build_encoder(c.model, q.tokenizer, max_length=24, sdpa=c.hardware.sdpa)
        return stage_keys(q, seed, enc, acc, pooling_for(c.model, enc)), q

    k0, _ = keys(prepared=p)
    assert len(set(k0)) == 3
    assert keys(prepared=p)[0] == k0  # stable
    assert keys(seed=1, prepared=p)[0][0] != k0[0]
    # an hparam of stage 2 changes keys 2 and 3, not 1
    k, _ = keys({"stages": {"toy_length": {"lr": 1e-3}}})
    assert k[0] == k0[0] and k[1] != k0[1] and k[2] != k0[2]
    # a data cap of stage 1 changes every key (the data actually used differs)
    k, _ = keys({"stages": {"toy_topic": {"max_examples": 50}}})
    assert k[0] != k0[0]
    # the order is part of the prefix
    k, _ = keys({"order": ["toy_length", "toy_topic", "toy_align"]})
    assert k[1] != k0[1] and k[0] != k0[0]
    # the evaluation languages do not change the encoder; they do change the probe key
    k, q = keys({"target": {"languages": ["en", "xa"]}})
    assert k == k0 and probe_key(q) != probe_key(p)
    k, q = keys({"probe": {"steps": 5}})
    assert k == k0 and probe_key(q) != probe_key(p)
    # a task option changes the target's scores (so a probe's), not what a stage trains: the probe kept the
    # old metric's value from the cache before
    k, q = keys({"tasks": {"toy_xnli": {"options": {"xtreme_metric": "macro_f1"}}}})
    assert k == k0 and probe_key(q) != probe_key(p)
    # on a GPU, which GPU and CUDA build trained it (bf16 and attention kernels differ between them)
    from types import SimpleNamespace

    from itt.cache import hardware_spec

    gpu = SimpleNamespace(device=torch.device("cuda", 0), mixed_precision="bf16", num_processes=1)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 80GB HBM3")
    h100 = hardware_spec(cfg, gpu)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA A100-SXM4-80GB")
    assert hardware_spec(cfg, gpu) != h100 and h100["gpu"] == "NVIDIA H100 80GB HBM3" and h100["cuda"] == "12.8"
    assert "gpu" not in hardware_spec(cfg, acc)  # on CPU: as before
    # settings that only shape the data leave the key where the data they give is the same: a data seed
    # with no cap, a QA window stride on a classification stage, a cap above the data's size
    assert keys({"data_seed": 7})[0] == k0
    assert keys({"stages": {"toy_topic": {"doc_stride": 8}}})[0] == k0
    assert keys({"stages": {"toy_topic": {"max_examples": 10**6}}})[0] == k0
    # nor does a target-only setting through the tokenizer (its last call's truncation state was hashed)
    assert keys({"finetune": {"max_length": 20}})[0] == k0


def test_tokenizer_fingerprint_leaves_out_the_last_calls_truncation():
    from itt.cache import tokenizer_fingerprint
    from itt.models import train_tokenizer

    tok = train_tokenizer(["a b c d e f g"], arch="bert", vocab_size=100)
    before = tokenizer_fingerprint(tok)
    tok(["a b c"], truncation=True, max_length=24)
    assert tokenizer_fingerprint(tok) == before
    tok(["a b c"], truncation=True, max_length=64, padding="max_length")
    assert tokenizer_fingerprint(tok) == before
    assert tokenizer_fingerprint(train_tokenizer(["a b c d e f h"], arch="bert", vocab_size=100)) != before


def test_remote_code_is_in_the_key_with_trust_remote_code(tmp_path, monkeypatch):
    """With ``model.trust_remote_code`` the model's own code (files beside its modules) is fingerprinted: an
    edited modelling file under the same name and weights gives another key."""
    import importlib
    import sys

    from itt.cache import code_fingerprint

    pkg = tmp_path / "remote_model"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "modeling.py").write_text("from transformers import BertConfig, BertModel\n"
                                     "class MyConfig(BertConfig):\n    pass\n"
                                     "class MyModel(BertModel):\n    config_class = MyConfig\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("remote_model.modeling")
    enc = mod.MyModel(mod.MyConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=8))
    first = code_fingerprint(enc)
    assert "remote_model.modeling:modeling.py" in first
    (pkg / "modeling.py").write_text((pkg / "modeling.py").read_text() + "# scaled attention changed\n")
    assert code_fingerprint(enc) != first
    sys.modules.pop("remote_model.modeling", None)
    sys.modules.pop("remote_model", None)


def test_an_entry_without_its_weights_is_discarded_not_looped_on(tmp_path):
    """A manifest whose weights file is gone (deleted by hand, or a writer's overwrite racing a reader's
    discard) is a miss that removes the entry: otherwise a chain claiming the prefix finds it again, forever."""
    from itt.cache import CacheMiss

    cache = StageCache(str(tmp_path / "c"))
    cache.put("k1", {"w": torch.ones(3)}, stages=[{"task": "t", "seconds": 1.0}], seconds=1.0)
    (_entry_dir(cache, "k1") / WEIGHTS).unlink()
    entry = cache.get("k1")
    assert entry is not None
    with pytest.raises(CacheMiss, match="weights missing"):
        cache.load(entry)
    assert cache.get("k1") is None


def test_a_full_disk_leaves_no_partial_file_and_the_chain_goes_on(tmp_path, monkeypatch):
    """The cache is an optimisation: a write that fails (ENOSPC) removes its temporary file, and the stage
    that trained is kept by the chain, which logs that it could not publish it."""
    import builtins
    import errno

    from itt.cache import SeedCache

    cache = StageCache(str(tmp_path / "c"))
    real_open = builtins.open

    def full(path, mode="r", *a, **k):
        if "wb" in mode and str(path).endswith(".tmp"):
            f = real_open(path, mode, *a, **k)
            f.write(b"part")
            f.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full)
    with pytest.raises(OSError):
        cache.put("k1", {"w": torch.ones(3)}, stages=[{"task": "t", "seconds": 1.0}], seconds=1.0)
    assert not list((tmp_path / "c").rglob("*.tmp")) and cache.get("k1") is None
    logs = []
    sc = SeedCache.__new__(SeedCache)
    sc.__dict__.update(cache=cache, keys=["k2"], history=[], pkey=None, probes=[], trained_now=True, trained=0, main=True,
                       lease=None, log=logs.append)
    sc.done(1, torch.nn.Linear(2, 2), {"task": "t", "seconds": 1.0}, None, 0.0, False)
    assert any("could not publish stage 1" in m and "goes on without it" in m for m in logs)


def test_stage_cache_on_s3(s3, tmp_path):
    """The same entries, leases and eviction through pyarrow's S3 filesystem (moto server)."""
    import pyarrow.fs as pafs

    uri = s3("cache")
    fs, path = pafs.FileSystem.from_uri(uri)
    cache = StageCache(path + "/stage_cache", filesystem=fs, poll_s=0.05)
    assert not cache.local and cache.get("k") is None
    entry, lease = cache.claim("k")
    assert entry is None and lease is not None
    assert cache._try_lease("k") is None  # held
    cache.put("k", {"w": torch.arange(10.0)}, stages=[{"task": "t", "seconds": 2.0}], seconds=2.0)
    lease.release()
    e = cache.get("k")
    assert torch.equal(cache.load(e)["w"], torch.arange(10.0)) and e.stages[0]["seconds"] == 2.0
    cache.put_probes("k", "pk", [{"probe": {"accuracy_mean": 0.5}, "seconds": 1.0}])
    assert cache.get_probes("k", "pk")[0]["probe"] == {"accuracy_mean": 0.5}
    # a corrupt object is detected
    with fs.open_output_stream(cache._entry("k", WEIGHTS)) as f:
        f.write(b"garbage")
    with pytest.raises(Exception):
        cache.load(cache.get("k"))
    assert cache.get("k") is None
    # eviction by size
    cache.max_bytes = 1
    cache.put("a", {"w": torch.ones(100)}, stages=[], seconds=0.0)
    time.sleep(0.01)
    cache.put("b", {"w": torch.ones(100)}, stages=[], seconds=0.0)
    assert [e["key"] for e in cache.entries()] == ["b"]



# --------------------------------------------------------------------------- two DDP ranks (gloo, no Ray)
def _ddp_rank(rank: int, port: int, cache_dir: str, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"})
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=2)
    cfg = validate(_merge(RAW, {"order": ["toy_topic", "toy_length"], "train": {"max_steps": 3},
                                "finetune": {"max_steps": 6}}), "test")
    p = prepare(cfg, log=quiet)
    runs = []
    for _ in range(2):  # cold (both ranks train, rank 0 publishes), then warm (both ranks load)
        reports = []
        run_chain(cfg, prepared=p, log=quiet, cache=StageCache(cache_dir), report=lambda m, s: reports.append(dict(m)))
        runs.append(reports)
    Path(out, f"rank{rank}.json").write_text(json.dumps(runs))
    dist.destroy_process_group()


def test_ddp_ranks_take_the_same_cache_decisions(tmp_path):
    """Two gloo ranks: rank 0 looks up and publishes, the decision and weights are broadcast, so both
    ranks skip the same stages and end with the same numbers as when they trained them."""
    import multiprocessing as mp
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ddp_rank, args=(r, port, str(tmp_path / "c"), str(tmp_path))) for r in (0, 1)]
    for pr in procs:
        pr.start()
    try:
        for pr in procs:
            pr.join(600)  # generous: on a busy 2-core machine the two ranks take turns
    finally:
        for pr in procs:
            if pr.is_alive():
                pr.kill()
                pr.join()
    assert [pr.exitcode for pr in procs] == [0, 0]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    cold, warm = r0
    assert cold[-1]["stages_trained"] == 2 and warm[-1]["stages_trained"] == 0 and warm[-1]["stages_from_cache"] == 2
    assert _strip(cold) == _strip(warm)
    assert _strip(r1[0]) == _strip(cold) and _strip(r1[1]) == _strip(warm)  # rank 1 reports the same
    assert r1[1][-1]["stages_from_cache"] == 2
    assert len(StageCache(str(tmp_path / "c")).entries()) == 2



def test_search_config_cache_block(tmp_path):
    from search.config import load_search

    import yaml

    raw = {**TINY, "search": {"candidates": TOY3, "length": 2, "cache": {"dir": "shared_cache", "max_bytes": 10**9}}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(raw))
    scfg, _, _ = load_search(p)
    assert scfg.cache.enabled and scfg.cache.max_bytes == 10**9
    assert scfg.cache.dir == str((tmp_path / "shared_cache").resolve())  # Ray workers run elsewhere
    assert os.path.isabs(scfg.cache.dir)



def test_results_csv_columns_and_end_line(tmp_path):
    """ResultsWriter: the running counts of each trial's last report become results.csv columns (also
    for a trial ASHA stopped); the end line sums them. (A real search through Ray: bench/stage_cache.py.)"""
    import csv
    from types import SimpleNamespace

    from search.config import SearchConfig
    from search.results import ResultsWriter
    from search.storage import Storage

    scfg = SearchConfig(candidates=TOY3, length=2, searcher="exhaustive")
    st = Storage(str(tmp_path / "runs"), "e")
    lines = []
    w = ResultsWriter(st, scfg, "accuracy", ["en"], log=lines.append)
    a = SimpleNamespace(trial_id="a", config={"order": "toy_topic>toy_length"}, status="TERMINATED")
    b = SimpleNamespace(trial_id="b", config={"order": "toy_topic>toy_align"}, status="TERMINATED")
    for t in (a, b):
        w.on_trial_start(0, [a, b], t)
    w.on_trial_result(0, [a, b], a, {"step": 1, "stages_trained": 1, "stages_from_cache": 0, "cache_seconds_saved": 0.0})
    w.on_trial_result(0, [a, b], a, {"step": 3, "final": 1, "objective": 0.5, "stages_trained": 2, "stages_from_cache": 0,
                                     "cache_seconds_saved": 0.0})
    w.on_trial_result(0, [a, b], b, {"step": 1, "stages_trained": 0, "stages_from_cache": 1, "cache_seconds_saved": 12.5})
    w.on_trial_complete(0, [a, b], a)
    w.on_trial_complete(0, [a, b], b)  # stopped after stage 1: its counts so far still count
    w.flush()  # (in a search, Tune's next controller step writes what a throttled rewrite held back)
    rows = {r["trial_id"]: r for r in csv.DictReader((tmp_path / "runs" / "e" / "results.csv").open())}
    assert (rows["a"]["stages_trained"], rows["a"]["stages_from_cache"]) == ("2", "0")
    assert (rows["b"]["stages_trained"], rows["b"]["stages_from_cache"], rows["b"]["status"]) == ("0", "1", "stopped")
    w.on_experiment_end([a, b])
    assert lines[-1] == "stage cache: 1 hits, 2 misses, ~12 s of training saved"
    # MLflow: the tracker logs every numeric figure of a report on the trial's child run, these too
    from search.tracking import report_metrics

    logged = report_metrics({"step": 1, "stages_trained": 0, "stages_from_cache": 1, "cache_seconds_saved": 12.5})
    assert logged == {"stages_trained": 0.0, "stages_from_cache": 1.0, "cache_seconds_saved": 12.5}


def test_trial_builds_the_search_cache(tmp_path):
    from search.config import SearchConfig
    from search.storage import Storage
    from search.trial import TrialContext, stage_cache

    st = Storage(str(tmp_path / "runs"), "e")
    ctx = lambda c: TrialContext(search=SearchConfig(candidates=TOY3, length=2, cache=c), chain_raw={}, storage=st,  # noqa: E731
                                 metric="accuracy")
    assert stage_cache(ctx({"enabled": False})) is None
    c = stage_cache(ctx({"max_bytes": 1000}))
    assert c.base == str(tmp_path / "runs" / "e" / "stage_cache") and c.max_bytes == 1000 and c.local
    assert stage_cache(ctx({"dir": str(tmp_path / "shared")})).base == str(tmp_path / "shared")


@pytest.mark.ray
def test_unwritable_shared_cache_dir_stops_the_search_before_ray(tmp_path, write_config, capsys):
    """search.cache.dir that cannot be written: one error line before any trial (not N errored trials)."""
    from search.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = write_config({"search": {"candidates": ["toy_topic", "toy_align"], "length": 1,
                                   "cache": {"dir": str(blocker / "cache")}, "tracking": {"enabled": False}}})
    assert main(["search", str(cfg), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: search.cache.dir {blocker / 'cache'}: cannot write there"), err
    assert not (tmp_path / "runs").exists()  # (the storage check removes the root it made)
