"""A chain end to end on tiny models: architectures, hand-off, determinism, files, callbacks."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from itt.chain import prepare, run_chain
from itt.config import load_config


def _cfg(write_config, overrides=None, sets=None):
    return load_config(write_config(overrides), sets)


@pytest.mark.parametrize("arch", ["bert", "roberta", "xlm-roberta", "xlnet"])
def test_chain_runs_on_each_architecture(arch, write_config, tmp_path):
    cfg = _cfg(write_config, {"model": {"tiny": {"arch": arch}}, "save_checkpoint": True})
    calls = []
    res = run_chain(cfg, out_dir=tmp_path / "o", report=lambda m, step: calls.append((step, m)), log=lambda *a: None)
    # stage reports 1..k, then the final report at k+1 (the callback a search adapts for ASHA)
    assert [s for s, _ in calls] == [1, 2, 3]
    assert calls[0][1]["task"] == "toy_topic" and "test_accuracy_mean" in calls[-1][1]
    seed = res["seeds"]["0"]
    assert [s["task"] for s in seed["stages"]] == ["toy_topic", "toy_length", "toy_xnli"]
    assert all(s["steps"] == 4 for s in seed["stages"])
    assert set(seed["test"]["per_language"]) == {"en", "xa", "xb", "xc"}
    ck = tmp_path / "o" / "seed0" / "checkpoint"
    assert (ck / "model.safetensors").is_file() and (ck / "head.safetensors").is_file()
    assert json.loads((ck / "config.json").read_text())["model_type"] == arch


@pytest.mark.parametrize("arch", ["bert", "roberta", "xlm-roberta", "xlnet", "distilbert"])
def test_every_trainable_encoder_weight_gets_a_gradient(arch, write_config):
    """With several workers per trial (DDP), a trainable parameter without a gradient stalls the next step
    ("Expected to have finished reduction in the prior iteration"): XLNet's mask_emb (permutation-LM
    targets only) did, as the pooler does where it is not dropped. One step of a classification and a
    tagging head on a toy batch, with the inputs the chain's tokenizer gives."""
    from itt.models import TaskModel, TokenModel, build_encoder, pooling_for
    from itt.train import new_head

    cfg = _cfg(write_config, {"model": {"tiny": {"arch": arch}}})
    p = prepare(cfg, log=lambda *a: None)
    enc = build_encoder(cfg.model, p.tokenizer, max_length=24, sdpa=True)
    batch = dict(p.tokenizer(["a short one", "and a somewhat longer second sentence"], ["x", "y z"], padding=True,
                             return_tensors="pt"))
    for model in (TaskModel(enc, new_head(32, p.target, 0), pooling_for(cfg.model, enc), False),
                  TokenModel(enc, 3)):
        model.zero_grad(set_to_none=True)
        model(**batch).float().square().mean().backward()
        missing = [n for n, w in enc.named_parameters() if w.requires_grad and w.grad is None]
        assert not missing, missing
    # weight decay on the parameters the 🤗 Trainer decays (get_decay_parameter_names): not biases, by name too
    # (XLNet's 2-D r_w_bias / r_r_bias / r_s_bias were decayed), nor norm weights
    from transformers import Trainer

    from itt.train import _optimizer

    from itt.kinds import handler

    enc.config.hidden_dropout_prob = 0.3  # every kind's head takes the encoder's dropout (multiple choice kept 0.1)
    for kind in ("pair_classification", "token_classification", "multiple_choice"):
        task = SimpleNamespace(kind=kind, num_labels=3, is_regression=False)
        head_model = handler(kind).model(enc, task, hidden=32, pooling="first", seed=0)
        assert {m.p for m in head_model.modules() if isinstance(m, torch.nn.Dropout) and m not in set(enc.modules())} == {0.3}
    decayed = {id(w) for w in _optimizer(model, cfg.train, False).param_groups[0]["params"]}
    trained = {n for n, w in model.named_parameters() if w.requires_grad}
    assert {n for n, w in model.named_parameters() if id(w) in decayed} == set(Trainer.get_decay_parameter_names(None, model)) & trained


def test_encoder_passes_between_stages_and_target_head_is_fresh(write_config):
    """Only encoder weights carry over; the target head's init does not depend on earlier stages."""
    from accelerate.utils import set_seed

    from itt.models import TaskModel, build_encoder, pooling_for
    from itt.train import make_accelerator, new_head, train_stage

    cfg = _cfg(write_config)
    p = prepare(cfg, log=lambda *a: None)
    set_seed(0)
    enc = build_encoder(cfg.model, p.tokenizer, max_length=24, sdpa=True)
    start = {k: v.clone() for k, v in enc.state_dict().items()}
    acc = make_accelerator(cfg.hardware)
    task = p.order[0]
    head = new_head(32, task, 7)
    m = TaskModel(enc, head, pooling_for(cfg.model, enc), False)
    train_stage(acc, m, p.train[task.name], p.tokenizer, task, cfg.stage_hparams(task.name), seed=7, hw=cfg.hardware)
    assert any(not torch.equal(start[k], v) for k, v in enc.state_dict().items())  # the encoder was trained in place
    fresh = new_head(32, p.target, 11)
    again = new_head(32, p.target, 11)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values()))


def test_same_config_and_seed_same_numbers(write_config):
    cfg = _cfg(write_config, {"model": {"tiny": {"dropout": 0.1}}})
    a = run_chain(cfg, log=lambda *x: None)
    b = run_chain(cfg, log=lambda *x: None)
    assert a["seeds"]["0"]["test"] == b["seeds"]["0"]["test"]
    assert [s["train_loss"] for s in a["seeds"]["0"]["stages"]] == [s["train_loss"] for s in b["seeds"]["0"]["stages"]]


def test_f_baseline_and_multi_seed_aggregate(write_config, tmp_path):
    cfg = _cfg(write_config, {"order": [], "seeds": [0, 1, 2]})
    res = run_chain(cfg, out_dir=tmp_path, log=lambda *a: None)
    assert res["setting"] == "F" and res["order"] == []
    vals = [res["seeds"][s]["test"]["summary"]["accuracy"]["mean"] for s in ("0", "1", "2")]
    agg = res["aggregate"]["test"]["summary"]["accuracy"]["mean"]
    mean = sum(vals) / 3
    assert agg["mean"] == pytest.approx(mean)
    assert agg["std"] == pytest.approx((sum((v - mean) ** 2 for v in vals) / 2) ** 0.5)
    assert json.loads((tmp_path / "results.json").read_text())["aggregate"] == json.loads(json.dumps(res["aggregate"]))
    hw = json.loads((tmp_path / "results.json").read_text())["hardware"]  # for the report's compute section
    assert hw["device"] == "cpu" and hw["processes"] == 1 and hw["device_name"] and hw["torch"] == torch.__version__


def test_prediction_files_recompute_metrics(write_config, tmp_path):
    cfg = _cfg(write_config, {"eval": {"perturbation": {"enabled": True, "char_rate": 0.2}}})
    res = run_chain(cfg, out_dir=tmp_path, log=lambda *a: None)
    for split in ("dev", "test"):
        for lang, m in res["seeds"]["0"][split]["per_language"].items():
            rows = [json.loads(x) for x in (tmp_path / "seed0" / "predictions" / f"{split}.{lang}.jsonl").read_text().splitlines()]
            assert len(rows) == 24 and len({r["id"] for r in rows}) == 24
            assert m["accuracy"] == pytest.approx(sum(r["gold"] == r["pred"] for r in rows) / len(rows), abs=1e-12)
    pert = res["seeds"]["0"]["perturbation"]
    noisy = [json.loads(x) for x in (tmp_path / "seed0" / "predictions" / "dev-noisy.xb.jsonl").read_text().splitlines()]
    assert pert["per_language"]["xb"]["accuracy"] == pytest.approx(sum(r["gold"] == r["pred"] for r in noisy) / len(noisy))
    clean = res["seeds"]["0"]["dev"]["summary"]["accuracy"]["mean"]
    assert pert["drop"] == pytest.approx(clean - pert["score"])


def test_regression_stage_grad_accum_and_length_grouping(write_config):
    cfg = _cfg(write_config, {"order": ["toy_sim"], "train": {"max_steps": None, "epochs": 1, "grad_accum": 2},
                              "hardware": {"group_by_length": True}})
    res = run_chain(cfg, log=lambda *a: None)
    st = res["seeds"]["0"]["stages"]
    # 64 examples / batch 16 = 4 micro-batches per epoch, 2 per optimizer step
    assert st[0]["task"] == "toy_sim" and st[0]["steps"] == 2 and st[0]["examples"] == 64


def test_an_epochs_remainder_is_a_step_of_its_own(write_config):
    """grad_accum 3 over an epoch of 4 batches: 2 steps (3 batches, then 1), one epoch's 64 examples, as
    🤗's Trainer does. The remainder was carried into the next epoch, so `epochs: 1` trained on 96, and a
    grad_accum above an epoch's batches made one step of several epochs."""
    for accum, steps, examples in ((3, 2, 64), (10, 1, 64), (4, 1, 64)):
        cfg = _cfg(write_config, {"order": ["toy_sim"], "train": {"max_steps": None, "epochs": 1, "grad_accum": accum},
                                  "seeds": [0]})
        st = run_chain(cfg, log=lambda *a: None)["seeds"]["0"]["stages"][0]
        assert (st["steps"], st["examples"]) == (steps, examples), (accum, st)


def test_checkpoint_reloads_to_same_predictions(write_config, tmp_path):
    """The saved encoder + head (safetensors) reproduce the chain's dev predictions exactly."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from itt.models import ClassificationHead, TaskModel
    from itt.train import make_accelerator, predict, tokenize
    from itt.data import load_split
    from itt.tasks import resolve_task

    cfg = _cfg(write_config, {"save_checkpoint": True})
    run_chain(cfg, out_dir=tmp_path, log=lambda *a: None)
    ck = tmp_path / "seed0" / "checkpoint"
    enc = AutoModel.from_pretrained(ck)
    tok = AutoTokenizer.from_pretrained(ck)
    head = ClassificationHead(32, 3)
    head.load_state_dict(load_file(str(ck / "head.safetensors")))
    model = TaskModel(enc, head, "first", False)
    task = resolve_task("toy_xnli")
    ds = load_split(task, "dev", "xa", toy_options={"n_eval": 24})
    pred = predict(make_accelerator(cfg.hardware), model, tokenize(ds, task, tok, 24), tok, batch_size=8)
    rows = [json.loads(x) for x in (tmp_path / "seed0" / "predictions" / "dev.xa.jsonl").read_text().splitlines()]
    assert [task.labels[int(p)] for p in pred] == [r["pred"] for r in rows]


def test_release_unwraps_the_mixed_precision_forward():
    """Under mixed precision Accelerate's prepare() binds an autocast forward into the model's __dict__:
    a reference cycle that kept each probe's copy (GPU memory on a GPU) alive until a full GC, and that
    every later stage wrapped again. _release removes it: the model is freed by refcount alone."""
    import gc
    import weakref

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from itt.train import _release

    gc.disable()
    try:
        AcceleratorState._reset_state(reset_partial_state=True)
        acc = Accelerator(cpu=True, mixed_precision="bf16")
        model = torch.nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model, opt = acc.prepare(model, opt)
        assert "_original_forward" in model.__dict__  # what Accelerate does (else this test proves nothing)
        _release(acc)
        assert "forward" not in model.__dict__ and model(torch.ones(1, 4)).dtype == torch.float32
        ref = weakref.ref(model)
        del model, opt
        assert ref() is None
    finally:
        gc.enable()
        AcceleratorState._reset_state(reset_partial_state=True)


def test_deterministic_kernels_while_the_chain_runs(write_config, monkeypatch):
    """hardware.deterministic: every stage trains with torch's deterministic algorithms on, which are off
    again afterwards; on CPU the numbers are those of the default; the stage cache keeps them apart."""
    import itt.chain as chain_mod
    from itt.cache import hardware_spec
    from itt.train import make_accelerator

    seen = []
    train_stage = chain_mod.train_stage

    def spy(*a, **k):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return train_stage(*a, **k)

    monkeypatch.setattr(chain_mod, "train_stage", spy)
    quiet = lambda *a: None  # noqa: E731
    on = _cfg(write_config, {"hardware": {"deterministic": True}})
    off = _cfg(write_config)
    a, b = run_chain(on, log=quiet)["seeds"]["0"], run_chain(off, log=quiet)["seeds"]["0"]
    assert seen == [True] * 3 + [False] * 3 and not torch.are_deterministic_algorithms_enabled()
    assert a["test"] == b["test"] and [s["train_loss"] for s in a["stages"]] == [s["train_loss"] for s in b["stages"]]
    acc = make_accelerator(off.hardware)
    assert hardware_spec(on, acc) == {**hardware_spec(off, acc), "deterministic": True}


def test_a_max_length_beyond_a_pretrained_models_position_table_is_one_error_line(write_config, tmp_path, capsys):
    """A pretrained encoder takes at most its position table's tokens (XLM-R: 514 embeddings numbered from
    padding_idx + 1, so 512). A longer max_length ran until the first long input and then failed with an
    index error (on a GPU a device-side assert); now the chain refuses it before any output, naming the
    setting. The encoder here is a tiny XLM-R a chain saved (24 tokens + 2 slots of slack: 25)."""
    from itt.config import ModelConfig
    from itt.errors import UserError
    from itt.models import check_model
    from search.cli import main
    from tests.conftest import TINY

    cfg = _cfg(write_config, {"model": {"tiny": {"arch": "xlm-roberta"}}, "save_checkpoint": True, "seeds": [0]})
    run_chain(cfg, out_dir=tmp_path / "first", log=lambda *a: None)
    ck = str(tmp_path / "first" / "seed0" / "checkpoint")
    capsys.readouterr()
    check_model(ModelConfig(name=ck), longest=(25, "train.max_length"))  # at the limit: fine
    with pytest.raises(UserError, match="finetune.max_length: 26 tokens, but model .* takes at most 25"):
        check_model(ModelConfig(name=ck), longest=(26, "finetune.max_length"))
    named = {**TINY, "model": {"name": ck}, "stages": {"toy_length": {"max_length": 40}}}
    path = write_config(base=named, name="named.yaml")
    code = main(["run", str(path), "--out", str(tmp_path / "second")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert err[0] == f"error: stages.toy_length.max_length: 40 tokens, but model '{ck}' takes at most 25 (its position table); give 25 or less"
    assert not (tmp_path / "second").exists()


def test_a_tokenizer_larger_than_the_models_vocabulary_is_one_error_line(write_config, tmp_path, capsys):
    """``model.tokenizer`` beside ``model.name``: a tokenizer with more tokens than the model's embedding table
    (mBERT's 119,547 on a model of 400) ran into an IndexError traceback at the first batch; now one line."""
    from search.cli import main
    from tests.conftest import SHARED, TINY

    mbert = SHARED / "tokenizers" / "bert-base-multilingual-cased"
    if not mbert.is_dir():
        pytest.skip(f"real data folder not found: {mbert}")
    cfg = _cfg(write_config, {"save_checkpoint": True, "seeds": [0]})
    run_chain(cfg, out_dir=tmp_path / "first", log=lambda *a: None)
    ck = str(tmp_path / "first" / "seed0" / "checkpoint")
    capsys.readouterr()
    path = write_config(base={**TINY, "model": {"name": ck, "tokenizer": str(mbert)}}, name="named.yaml")
    code = main(["run", str(path), "--out", str(tmp_path / "second")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: model.tokenizer: '{mbert}' has 119547 tokens, but model '{ck}' embeds "), err
    assert not (tmp_path / "second").exists()


def test_a_model_folder_under_home_loads(write_config, tmp_path, monkeypatch):
    """``model.name: ~/models/x`` (a path, as itt/hub.py and the "no such folder" line read it): 🤗's
    from_pretrained does not expand ``~`` and took it for a Hub ID ("Repo id must use alphanumeric chars")."""
    from itt.config import ModelConfig
    from itt.models import build_encoder, check_model, load_tokenizer

    cfg = _cfg(write_config, {"save_checkpoint": True, "seeds": [0]})
    run_chain(cfg, out_dir=tmp_path / "home" / "models", log=lambda *a: None)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    name = "~/models/seed0/checkpoint"
    tok = load_tokenizer(name)
    mcfg = ModelConfig(name=name)
    assert check_model(mcfg).model_type == "bert"
    assert build_encoder(mcfg, tok, max_length=24, sdpa=True).config.vocab_size == len(tok)


def test_fp16_loss_scaler_starts_fresh_in_each_stage(write_config, tmp_path, monkeypatch):
    """fp16 (on a GPU: Accelerate's native AMP and one GradScaler per Accelerator, rebuilt here on the CPU): the
    chain's one Accelerator trains every stage, so the scaler's state (scale, growth tracker) carried over and
    a stage's skipped first steps depended on what trained before it. A prefix from the stage cache gave another
    target fine-tune than the same chain trained from scratch, and a seed other numbers beside another seed."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    import itt.chain as chain

    def fp16_cpu(hw):
        AcceleratorState._reset_state(reset_partial_state=True)  # (a process's first Accelerator fixes its precision)
        acc = Accelerator(cpu=True, mixed_precision="fp16")
        acc.native_amp = True
        # a tiny model's gradients are small: a higher initial scale meets the overflows a real encoder meets at 2**16
        acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 20)
        return acc

    monkeypatch.setattr(chain, "make_accelerator", fp16_cpu)
    over = {"model": {"tiny": {"dropout": 0.1}}, "train": {"max_steps": 6}, "eval": {"splits": ["test"]},
            "cache_dir": str(tmp_path / "cache")}
    losses = lambda res, s="0": [st["train_loss"] for st in res["seeds"][s]["stages"]]  # noqa: E731
    try:
        trained = run_chain(_cfg(write_config, over), log=lambda *a: None)
        cached = run_chain(_cfg(write_config, over), log=lambda *a: None)
        beside = run_chain(_cfg(write_config, {**over, "seeds": [1, 0], "cache_dir": None}), log=lambda *a: None)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert cached["seeds"]["0"]["cache"]["stages_from_cache"] == 2
    assert losses(cached) == losses(trained)
    assert cached["seeds"]["0"]["test"] == trained["seeds"]["0"]["test"]
    assert losses(beside, "0") == losses(trained)
