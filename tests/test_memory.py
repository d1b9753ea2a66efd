"""GPU memory. A CUDA out-of-memory error cuts a stage's batches into micro-batches: the same update, the
same predictions (itt.train.MicroBatches); the errors are raised by a forward hook once a batch has more
rows than a limit, as a GPU shared by several trials raises them once a long stage's batch no longer
fits. ``hardware.gradient_checkpointing`` recomputes activations in the backward pass: the same numbers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from itt.chain import prepare, run_chain
from itt.config import load_config
from itt.models import TaskModel, TokenModel, build_encoder, pooling_for
from itt.train import MicroBatches, _accumulate, make_accelerator, new_head, predict, train_stage

NO_DROPOUT = {"model": {"tiny": {"dropout": 0.0}}, "train": {"batch_size": 8, "grad_accum": 2, "max_steps": 3}}


def _limit(module: torch.nn.Module, rows: int, calls: list | None = None):
    """Raise torch's out-of-memory error when a forward gets more than ``rows`` rows."""
    def hook(mod, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if calls is not None:
            calls.append(ids.size(0))
        if ids.size(0) > rows:
            raise torch.OutOfMemoryError(f"CUDA out of memory (test: {ids.size(0)} rows > {rows})")

    return module.register_forward_pre_hook(hook, with_kwargs=True)


def _stage_model(cfg, p, task):
    torch.manual_seed(0)
    enc = build_encoder(cfg.model, p.tokenizer, max_length=24, sdpa=True)
    return TaskModel(enc, new_head(32, task, 7, dropout=0.0), pooling_for(cfg.model, enc), False)


def test_a_stage_that_runs_out_of_memory_goes_on_in_micro_batches_with_the_same_update(write_config):
    cfg = load_config(write_config(NO_DROPOUT))
    p = prepare(cfg, log=lambda *a: None)
    task, hp = p.order[0], cfg.stage_hparams(p.order[0].name)
    acc = make_accelerator(cfg.hardware)
    whole = _stage_model(cfg, p, task)
    a = train_stage(acc, whole, p.train[task.name], p.tokenizer, task, hp, seed=3, hw=cfg.hardware)
    cut, said, rows = _stage_model(cfg, p, task), [], []
    handle = _limit(cut, 3, rows)
    b = train_stage(acc, cut, p.train[task.name], p.tokenizer, task, hp, seed=3, hw=cfg.hardware, log=said.append)
    handle.remove()
    # 8 rows -> 2 x 4 -> 4 x 2 (two errors on the first step), then every forward 2 rows
    assert a.micro_batches == 1 and b.micro_batches == 4
    assert rows[:3] == [8, 4, 2] and set(rows[3:]) == {2} and len(rows) == 2 + 3 * 2 * 4  # 2 failed, 3 steps x 2 batches x 4
    assert [s for s in said if "out of GPU memory" in s] == [
        "  out of GPU memory at 8 examples per batch: going on in 2 micro-batches per batch (the same update; hardware.split_on_oom)",
        "  out of GPU memory at 8 examples per batch: going on in 4 micro-batches per batch (the same update; hardware.split_on_oom)"]
    assert (b.steps, b.examples, b.tokens) == (a.steps, a.examples, a.tokens)
    assert b.train_loss == pytest.approx(a.train_loss, abs=1e-6)
    diff = max((x - y).abs().max().item() for x, y in zip(whole.state_dict().values(), cut.state_dict().values()))
    moved = max((x - y).abs().max().item() for x, y in zip(whole.state_dict().values(), _stage_model(cfg, p, task).state_dict().values()))
    assert diff < 1e-5 < moved  # the same update (float sums in another order), and training did move the weights


def test_tagging_micro_batches_weigh_their_loss_by_labelled_tokens():
    """A token-level loss averages over the labelled tokens of the whole batch, which the micro-batches
    share unevenly: weighted by their share, the gradients are the whole batch's."""
    from transformers import BertConfig, BertModel

    acc = make_accelerator(load_hw())
    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                    add_pooling_layer=False)
    model = TokenModel(enc, 5, dropout=0.0)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 50, (6, 9), generator=g)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 5, (6, 9), generator=g)
    labels[:4, 2:] = -100  # the first rows have 2 labelled tokens, the last ones 9
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def grads(pieces):
        model.zero_grad()
        loss = _accumulate(acc, model, model, [batch], pieces)
        return loss[0].item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    loss1, g1 = grads(1)
    for pieces in (2, 3, 6):
        loss, g = grads(pieces)
        assert loss == pytest.approx(loss1, abs=1e-6) and torch.allclose(g, g1, atol=1e-6), pieces
    # unweighted micro-batch means would not be (the check above could fail)
    model.zero_grad()
    for part in (slice(0, 3), slice(3, 6)):
        (TokenModel.loss(model(ids[part], mask[part]), labels[part]) / 2).backward()
    assert not torch.allclose(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), g1, atol=1e-4)


def load_hw():
    from itt.config import HardwareConfig

    return HardwareConfig(device="cpu")


def test_out_of_memory_that_cannot_be_cut_says_what_to_do(write_config, monkeypatch):
    cfg = load_config(write_config(NO_DROPOUT))
    p = prepare(cfg, log=lambda *a: None)
    task, hp = p.order[0], cfg.stage_hparams(p.order[0].name)
    acc = make_accelerator(cfg.hardware)
    for hw, rows, why in ((cfg.hardware.model_copy(update={"split_on_oom": False}), 3, "hardware.split_on_oom is false"),
                          (cfg.hardware, 0, "one example per micro-batch already")):
        model = _stage_model(cfg, p, task)
        _limit(model, rows)
        with pytest.raises(torch.OutOfMemoryError) as e:
            train_stage(acc, model, p.train[task.name], p.tokenizer, task, hp, seed=3, hw=hw, log=lambda *a: None)
        assert why in " ".join(e.value.__notes__) and "grad_accum" in " ".join(e.value.__notes__)
    # several processes: not cut (a rank repeating a step alone would hang the all-reduce)
    with pytest.raises(torch.OutOfMemoryError) as e:
        try:
            raise torch.OutOfMemoryError("CUDA out of memory")
        except torch.OutOfMemoryError as err:
            MicroBatches(True, 2).check(8, err)
    assert "a stage of 2 processes is not cut" in e.value.__notes__[0]
    # out of memory in the optimizer step (its state comes at the first step): not redone, said as such
    model = _stage_model(cfg, p, task)

    def step(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory (test: optimizer state)")

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    with pytest.raises(torch.OutOfMemoryError) as e:
        train_stage(make_accelerator(cfg.hardware), model, p.train[task.name], p.tokenizer, task, hp, seed=3,
                    hw=cfg.hardware, log=lambda *a: None)
    assert e.value.__notes__ == ["itt: out of memory in the optimizer step (AdamW keeps 2 fp32 values per parameter, "
                                 "allocated at the first step; micro-batches do not shrink them): give each trial more "
                                 "of the GPU (search.resources.gpus_per_worker) or train a smaller model"]


def test_prediction_that_runs_out_of_memory_is_cut_and_exact(write_config):
    cfg = load_config(write_config(NO_DROPOUT))
    p = prepare(cfg, log=lambda *a: None)
    task = p.target
    acc = make_accelerator(cfg.hardware)
    model = _stage_model(cfg, p, task)
    feats = next(iter(p.probe.values()))[1] if p.probe else p.train[task.name]
    whole = predict(acc, model, feats, p.tokenizer, batch_size=16)
    handle = _limit(model, 5)
    cut = predict(acc, model, feats, p.tokenizer, batch_size=16)
    handle.remove()
    assert len(whole) > 5 and (cut == whole).all()


def test_a_chain_whose_stages_run_out_of_memory_records_it_and_scores_the_same(write_config, monkeypatch):
    """The whole chain (intermediate stages, target fine-tune, evaluation) with every forward of more than
    4 rows failing: results.json says each stage ran in micro-batches and the scores are the chain's."""
    cfg = load_config(write_config({**NO_DROPOUT, "eval": {"batch_size": 16}}))
    quiet = lambda *a: None  # noqa: E731
    whole = run_chain(cfg, log=quiet)
    forward = TaskModel.forward

    def tight(self, input_ids, *a, **k):
        if input_ids.size(0) > 4:
            raise torch.OutOfMemoryError(f"CUDA out of memory (test: {input_ids.size(0)} rows)")
        return forward(self, input_ids, *a, **k)

    monkeypatch.setattr(TaskModel, "forward", tight)
    cut = run_chain(cfg, log=quiet)
    stages = cut["seeds"]["0"]["stages"]
    assert [s["micro_batches"] for s in stages] == [2, 2, 2]
    assert [s["micro_batches"] for s in whole["seeds"]["0"]["stages"]] == [1, 1, 1]
    a, b = whole["seeds"]["0"]["test"]["summary"], cut["seeds"]["0"]["test"]["summary"]
    assert b["accuracy"]["mean"] == pytest.approx(a["accuracy"]["mean"], abs=1e-9)


def test_gradient_checkpointing_recomputes_layers_and_gives_the_same_numbers(write_config):
    from torch.nn.modules.module import register_module_forward_hook
    from transformers.models.bert.modeling_bert import BertIntermediate

    calls = []  # forwards of the layer's feed-forward block: run again in the backward pass when checkpointed
    hook = register_module_forward_hook(lambda mod, i, o: calls.append(1) if isinstance(mod, BertIntermediate) else None)
    quiet = lambda *a: None  # noqa: E731
    runs = {}
    try:
        for on in (False, True):  # (dropout 0.1: the recomputation replays the RNG, so the masks are the same)
            calls.clear()
            cfg = load_config(write_config({"model": {"tiny": {"dropout": 0.1}}, "hardware": {"gradient_checkpointing": on}}))
            runs[on] = (run_chain(cfg, log=quiet)["seeds"]["0"], len(calls))
    finally:
        hook.remove()
    (plain, n_plain), (ckpt, n_ckpt) = runs[False], runs[True]
    # each training forward runs again in the backward pass: 3 stages x 4 steps x 1 layer more
    assert n_ckpt == n_plain + 3 * 4
    assert [s["train_loss"] for s in ckpt["stages"]] == [s["train_loss"] for s in plain["stages"]]
    assert ckpt["test"] == plain["test"]


def test_gradient_checkpointing_on_an_architecture_without_it_is_refused(write_config, tmp_path):
    from transformers import XLNetConfig, XLNetModel

    from itt.config import ModelConfig
    from itt.errors import ConfigError, UserError
    from itt.models import check_model

    with pytest.raises(ConfigError, match="gradient_checkpointing: transformers' XLNet does not support it"):
        load_config(write_config({"model": {"tiny": {"arch": "xlnet"}}, "hardware": {"gradient_checkpointing": True}}))
    XLNetModel(XLNetConfig(vocab_size=30, d_model=8, n_layer=1, n_head=2, d_inner=16)).save_pretrained(tmp_path / "xlnet")
    named = ModelConfig(name=str(tmp_path / "xlnet"))
    check_model(named)  # without checkpointing: fine
    with pytest.raises(UserError, match=r"gradient_checkpointing: model '.*xlnet' \(XLNetModel\) does not support it"):
        check_model(named, gradient_checkpointing=True)


def test_a_trial_on_part_of_a_gpu_keeps_to_that_part_of_its_memory(monkeypatch):
    from search.config import Resources
    from itt.train import cap_gpu_memory

    set_to = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, device=None: set_to.append(f))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=80 * 2**30))
    assert Resources().cap_gpu_memory is True
    # a quarter of an 80 GiB GPU, less the 1 GiB its CUDA context holds outside the allocator: 4 trials' caps
    # and contexts fit together (a cap of exactly 0.25 each overcommitted the card by 4 contexts)
    want = 0.25 - 1 / 80
    assert cap_gpu_memory(0.25) == pytest.approx(want) and set_to == [pytest.approx(want)]
    assert 4 * (cap_gpu_memory(0.25) * 80 + 1) <= 80
    assert cap_gpu_memory(0.01) == pytest.approx(0.005)  # a tiny share keeps half of itself, not nothing
    set_to.clear()
    assert cap_gpu_memory(1.0) is None and cap_gpu_memory(2) is None and cap_gpu_memory(0) is None
    assert cap_gpu_memory(0.5, enabled=False) is None and set_to == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cap_gpu_memory(0.25) is None and set_to == []


def test_a_decoder_pools_its_last_token_and_an_encoder_decoder_is_refused(write_config, tmp_path, capsys):
    """GPT-2 as model.name trained with first-token pooling (its first token sees only itself: the heads
    learned from nothing of the input); T5 failed in its forward for want of decoder inputs."""
    from transformers import GPT2Config, GPT2Model, T5Config, T5Model

    from itt.config import ModelConfig
    from itt.errors import UserError
    from itt.models import check_model, is_decoder_only, pooling_for
    from search.cli import main
    from tests.conftest import TINY

    GPT2Model(GPT2Config(vocab_size=30, n_embd=8, n_layer=1, n_head=2, n_positions=32)).save_pretrained(tmp_path / "gpt2")
    gpt2 = GPT2Model.from_pretrained(tmp_path / "gpt2")
    assert is_decoder_only(gpt2.config)
    assert pooling_for(ModelConfig(name=str(tmp_path / "gpt2")), gpt2) == "last"
    assert pooling_for(ModelConfig(name=str(tmp_path / "gpt2"), pooling="mean"), gpt2) == "mean"
    check_model(ModelConfig(name=str(tmp_path / "gpt2")))  # auto: fine
    with pytest.raises(UserError, match=r"model.pooling: first, but '.*gpt2' is a decoder \(gpt2: each token sees"):
        check_model(ModelConfig(name=str(tmp_path / "gpt2"), pooling="first"))
    from transformers import BertConfig, XLNetConfig  # encoders (XLNet sits in the causal-LM mapping too)
    assert not is_decoder_only(BertConfig()) and not is_decoder_only(XLNetConfig())

    T5Model(T5Config(vocab_size=30, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)).save_pretrained(tmp_path / "t5")
    path = write_config(base={**TINY, "model": {"name": str(tmp_path / "t5")}}, name="t5.yaml")
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"error: model.name: '{tmp_path / 't5'}' is an encoder-decoder (t5); itt trains encoders "
                   "(XLM-R, mBERT, BERT, RoBERTa, XLNet, ...): give one"], err
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_without_a_padding_token_pads_with_its_end_of_text_token(tmp_path):
    """GPT-2's and Llama's tokenizers have no padding token: the first padded batch was a traceback."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from itt.errors import UserError
    from itt.models import load_tokenizer

    vocab = {"<eos>": 0, "<unk>": 1, "a": 2, "b": 3}
    for name, eos in (("with_eos", "<eos>"), ("without", None)):
        words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        PreTrainedTokenizerFast(tokenizer_object=words, eos_token=eos, unk_token="<unk>").save_pretrained(tmp_path / name)
    tok = load_tokenizer(str(tmp_path / "with_eos"))
    assert tok.pad_token == "<eos>" and tok.pad_token_id == 0
    assert tok(["a", "a b"], padding=True)["attention_mask"] == [[1, 0], [1, 1]]
    with pytest.raises(UserError, match="has neither a padding nor an end-of-text token"):
        load_tokenizer(str(tmp_path / "without"))
