"""Two Ray Train workers on CPU (gloo): gradients sync across processes.

Each worker builds the tiny toy chain pieces exactly as the library does (``itt.chain.prepare``,
``itt.train.make_accelerator``, ``itt.models.build_encoder``, ``TaskModel`` + ``new_head``) and trains
one stage with ``itt.train.train_stage``; every rank dumps its encoder and head weights before and after
the stage to a shared folder. The two ranks train on DIFFERENT examples (each gets its own half of the
stage's data, and in a MULTI_CPU run Accelerate's ``prepare`` shards the loader again), so only gradient
sync can leave them with identical weights.

The negative control swaps in a plain ``Accelerator()`` (in the same worker group, after the library's
variant, with Accelerate's process-wide state reset: one Ray Train start-up for both): on a CPU-only
machine it sees one process, does not wrap the model in DDP and does not shard the data, so the ranks'
weights must end up different.
Without that control the positive test could pass for a wrong reason (e.g. both ranks seeing the same
batches).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, _merge

pytestmark = pytest.mark.ray  # its tests start Ray: they run one at a time, in one worker (tests/conftest.py)

ray = pytest.importorskip("ray")

# One intermediate stage of a few steps on the toy benchmark; a deterministic model (no dropout) so
# that any difference between ranks can only come from their data and their gradients.
CFG = _merge(TINY, {"order": ["toy_topic"], "model": {"tiny": {"dropout": 0.0}},
                    "train": {"max_steps": 3, "batch_size": 8}, "hardware": {"device": "cpu", "num_threads": 1}})


# --------------------------------------------------------------------------- inside each Ray worker
def _worker_loop(config: dict) -> dict:
    """Both variants in one worker group (one Ray Train start-up): the library's accelerator, then a plain
    one, with Accelerate's process-wide state reset in between (else the second would reuse the first's)."""
    from accelerate.state import AcceleratorState

    info = _variant({**config, "out": str(Path(config["out"]) / "lib")}, plain=False)
    AcceleratorState._reset_state(reset_partial_state=True)
    _variant({**config, "out": str(Path(config["out"]) / "plain")}, plain=True)
    return info


def _variant(config: dict, plain: bool) -> dict:
    import hashlib

    import ray.train
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from safetensors.torch import save_file

    from itt.chain import prepare
    from itt.config import ChainConfig
    from itt.models import TaskModel, build_encoder, hidden_size, pooling_for
    from itt.train import make_accelerator, new_head, train_loader, train_stage

    torch.set_num_threads(1)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    out = Path(config["out"])
    cfg = ChainConfig.model_validate(config["chain"])
    p = prepare(cfg, log=lambda *a: None)
    acc = Accelerator() if plain else make_accelerator(cfg.hardware)
    task = p.order[0]
    hp = cfg.stage_hparams(task.name)
    full = p.train[task.name]

    # Which examples does Accelerate give this rank from the library's (unsharded) loader?
    loader = acc.prepare(train_loader(full, p.tokenizer, batch_size=hp.batch_size, seed=7, group_by_length=False,
                                      on_gpu=False))
    first = next(iter(loader))["input_ids"]
    acc.free_memory()

    # model: as in itt.chain._seed_steps (same seed on every rank: identical initial weights)
    set_seed(0)
    encoder = build_encoder(cfg.model, p.tokenizer, max_length=hp.max_length, sdpa=cfg.hardware.sdpa)
    set_seed(1)
    model = TaskModel(encoder, new_head(hidden_size(encoder), task, 1), pooling_for(cfg.model, encoder),
                      task.is_regression)

    def dump(tag: str) -> None:
        sd = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
        sd.update({f"head.{k}": v for k, v in model.head.state_dict().items()})
        save_file({k: v.detach().cpu().clone().contiguous() for k, v in sd.items()},
                  str(out / f"rank{rank}_{tag}.safetensors"))

    dump("before")
    # each rank trains on its own half of the data: without gradient sync the weights must diverge
    shard = full.shard(num_shards=world, index=rank, contiguous=True)
    stats = train_stage(acc, model, shard, p.tokenizer, task, hp, seed=1, hw=cfg.hardware)
    dump("after")
    info = {"rank": rank, "world_size": world, "num_processes": acc.num_processes,
            "process_index": acc.process_index, "distributed_type": acc.distributed_type.value,
            "ddp_wrapped": type(acc.prepare(torch.nn.Linear(1, 1))).__name__, "steps": stats.steps,
            "first_batch": hashlib.sha256(first.numpy().tobytes()).hexdigest(),
            "shard_ids": hashlib.sha256(repr(shard["input_ids"]).encode()).hexdigest()}
    (out / f"rank{rank}.json").write_text(json.dumps(info))
    return info  # rank 0's comes back as result.return_value (Train V2 keeps result.metrics only with checkpoints)


# --------------------------------------------------------------------------- the driver side
@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of our own (3 CPUs: two workers and slack). One already up in this process is reused
    when it has two free CPUs; a smaller one is a leftover (other modules' fixtures have torn theirs
    down by now) and is replaced, or the trainer would wait for resources forever."""
    import ray.cloudpickle

    # workers unpickle the loop by value, whatever their working directory and sys.path
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if ray.is_initialized() and ray.available_resources().get("CPU", 0) < 2:
        ray.shutdown()
    owner = not ray.is_initialized()
    if owner:
        ray.init(address="local", num_cpus=3, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 configure_logging=True)
    yield ray
    if owner:
        ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def fitted(local_ray, tmp_path_factory) -> Path:
    """One TorchTrainer run of two workers that trains both variants (``_worker_loop``)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    tmp = tmp_path_factory.mktemp("multiworker")
    for name in ("lib", "plain"):
        (tmp / name).mkdir()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"chain": CFG, "out": str(tmp)},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(name="multiworker", storage_path=str(tmp / "ray_storage")),
    )
    result = trainer.fit()
    (tmp / "rank0_return.json").write_text(json.dumps(result.return_value))
    return tmp


def _load(tmp: Path, variant: str) -> tuple[list[dict], list[dict], list[dict]]:
    """Each rank's weights before and after the stage, and what it reported, for ``variant`` (lib or plain)."""
    from safetensors.torch import load_file

    out = tmp / variant
    before = [load_file(str(out / f"rank{r}_before.safetensors")) for r in (0, 1)]
    after = [load_file(str(out / f"rank{r}_after.safetensors")) for r in (0, 1)]
    return before, after, [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_cpu_workers_sync_gradients(fitted):
    before, after, info = _load(fitted, "lib")
    rank0 = json.loads((fitted / "rank0_return.json").read_text())
    # the library's accelerator: two processes, MULTI_CPU (gloo), the model wrapped in DDP
    assert rank0 == info[0]
    for r, i in enumerate(info):
        assert (i["rank"], i["process_index"], i["world_size"], i["num_processes"]) == (r, r, 2, 2)
        assert i["distributed_type"] == "MULTI_CPU" and i["ddp_wrapped"] == "DistributedDataParallel"
        assert i["steps"] == CFG["train"]["max_steps"]
    # the ranks saw different data: Accelerate shards the loader, and the stage ran on different halves
    assert info[0]["first_batch"] != info[1]["first_batch"]
    assert info[0]["shard_ids"] != info[1]["shard_ids"]
    # same start, trained, and bit-identical at the end: the gradients were averaged across ranks
    assert _same(before[0], before[1])
    assert not any(torch.equal(before[0][k], after[0][k]) for k in after[0] if k.startswith("encoder.encoder.layer"))
    assert not _same(before[0], after[0])
    assert _same(after[0], after[1])


def test_plain_accelerator_does_not_sync_negative_control(fitted):
    """Plain ``Accelerator()`` in a CPU Ray worker: one process, no DDP, no sync; the ranks diverge
    (the check above can fail, and make_accelerator's ``cpu=True`` is what makes it pass)."""
    before, after, info = _load(fitted, "plain")
    for i in info:
        assert i["num_processes"] == 1 and i["distributed_type"] == "NO" and i["ddp_wrapped"] == "Linear"
    assert info[0]["first_batch"] == info[1]["first_batch"]  # no sharding either: each rank sees all data
    assert _same(before[0], before[1])
    assert not _same(before[0], after[0]) and not _same(before[1], after[1])
    assert not _same(after[0], after[1])
