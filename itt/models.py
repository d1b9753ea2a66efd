"""Encoders, tokenizers and task heads.

The encoder is any 🤗 ``AutoModel`` (a Hub ID, a local path, or a tiny random-init architecture
from config); it passes from stage to stage. Each task gets its own small head on a pooled
representation, so the hand-off between stages is explicit: only encoder weights carry over.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from itt import hub
from itt.config import ModelConfig
from itt.errors import UserError, first_line

SPECIAL = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
# Archs whose real tokenizers return no token_type_ids (a size-1 type vocabulary).
_NO_TYPE_IDS = {"roberta", "xlm-roberta", "distilbert"}


# --------------------------------------------------------------------------- tokenizers
def train_tokenizer(texts, *, arch: str, vocab_size: int):
    """A WordPiece tokenizer fitted to ``texts`` (most frequent words + all characters), with the arch's template.

    A tokenizer trained with ``tokenizers`` adds no special tokens until it has a post-processor,
    so one is set here ([CLS] first for BERT-likes; XLNet-style [CLS] last, padded on the left).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    # The vocabulary is counted here, not by tokenizers' WordPieceTrainer: that trainer breaks ties
    # in hash order, so two runs on the same text gave different vocabularies (and numbers).
    normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter = Counter()
    for t in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
    chars = sorted({c for w in counts for c in w})
    vocab = list(SPECIAL.values()) + chars + ["##" + c for c in chars]  # every word stays spellable
    have = set(vocab)
    for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        if w not in have:
            vocab.append(w)
            have.add(w)
    tok = Tokenizer(models.WordPiece(vocab={w: i for i, w in enumerate(vocab)}, unk_token=SPECIAL["unk"], max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    cls, sep = tok.token_to_id(SPECIAL["cls"]), tok.token_to_id(SPECIAL["sep"])
    if arch == "xlnet":
        single, pair = "$A:0 [SEP]:0 [CLS]:2", "$A:0 [SEP]:0 $B:1 [SEP]:1 [CLS]:2"
    else:
        single, pair = "[CLS]:0 $A:0 [SEP]:0", "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1"
    tok.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    names = ["input_ids", "attention_mask"] + ([] if arch in _NO_TYPE_IDS else ["token_type_ids"])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=SPECIAL["unk"], pad_token=SPECIAL["pad"], cls_token=SPECIAL["cls"],
        sep_token=SPECIAL["sep"], mask_token=SPECIAL["mask"], model_max_length=512,
        padding_side="left" if arch == "xlnet" else "right", model_input_names=names,
    )


def load_tokenizer(name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    with _from_hub(f"tokenizer '{name_or_path}'", "cannot load", name_or_path):
        tok = AutoTokenizer.from_pretrained(_local(name_or_path), revision=revision, trust_remote_code=trust_remote_code)
    if set(tok.get_vocab()) <= set(tok.all_special_tokens):  # transformers 5 builds one from a config alone: every
        # word became [UNK] and a chain ran on (no vocab.txt, tokenizer.json, sentencepiece model in the folder)
        raise UserError(f"tokenizer '{name_or_path}': cannot load (no vocabulary there, only its "
                        f"{len(tok.get_vocab())} special tokens: its tokenizer files are missing)")
    if tok.pad_token is None:  # a decoder's (GPT-2, Llama): pad with its end-of-text token, as 🤗's docs for
        if tok.eos_token is None:  # GPT2ForSequenceClassification do (the attention mask hides the padding)
            raise UserError(f"tokenizer '{name_or_path}' has neither a padding nor an end-of-text token to pad with")
        tok.pad_token = tok.eos_token
    return tok


@contextlib.contextmanager
def _from_hub(what: str, failed: str, name_or_path: str):
    """A load from the 🤗 Hub (or a local folder): offline at once where the Hub cannot be reached
    (itt/hub.py); any failure is one line, ``<what>: <failed> (<why>)``."""
    if hub.looks_like_a_path(name_or_path) and not hub.is_local(name_or_path):
        raise UserError(f"{what}: {failed} (no such folder: {os.path.expanduser(name_or_path)})")
    offline = False
    try:
        if hub.is_local(name_or_path):
            yield
        else:
            with hub.offline_unless_reachable() as offline:
                yield
    except UserError:
        raise
    except Exception as e:
        # (offline, a missing file is an OSError; anything else, e.g. a damaged cached file, says itself)
        why = hub.not_cached(f"'{name_or_path}'") if offline and isinstance(e, OSError) else first_line(e)
        if "custom code" in str(e) or "trust_remote_code" in str(e):  # (transformers names its own argument)
            why = ("its repository's own Python code must run to load it: set model.trust_remote_code: true "
                   "if you trust that code (read it first)")
        raise UserError(f"{what}: {failed} ({why})") from None


def _local(name_or_path: str) -> str:
    """A local folder's path as 🤗 can open it (``~`` expanded: from_pretrained took ``~/model`` for a Hub ID);
    a Hub ID as it is."""
    return os.path.expanduser(name_or_path) if hub.is_local(name_or_path) else name_or_path


# --------------------------------------------------------------------------- encoders
def _attn_impl(config, want_sdpa: bool) -> str:
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    cls = MODEL_MAPPING.get(type(config), None)
    return "sdpa" if want_sdpa and getattr(cls, "_supports_sdpa", False) else "eager"


# on a GPU, batches pad to a multiple of this (tensor cores; itt/train.py _collator)
GPU_PAD_MULTIPLE = 8


def tiny_config(tiny, tokenizer, max_length: int):
    """A random-init architecture config sized by ``tiny`` and matched to ``tokenizer``."""
    from transformers import AutoConfig

    pad = tokenizer.pad_token_id
    common = dict(vocab_size=len(tokenizer), pad_token_id=pad)
    # a GPU batch whose longest input has max_length tokens is padded wider: the position table covers
    # max_length rounded up to GPU_PAD_MULTIPLE
    max_length = -(-max_length // GPU_PAD_MULTIPLE) * GPU_PAD_MULTIPLE
    if tiny.arch == "xlnet":
        kw = dict(d_model=tiny.hidden_size, n_layer=tiny.num_layers, n_head=tiny.num_heads, d_inner=tiny.intermediate_size,
                  dropout=tiny.dropout)
    elif tiny.arch == "distilbert":
        kw = dict(dim=tiny.hidden_size, n_layers=tiny.num_layers, n_heads=tiny.num_heads, hidden_dim=tiny.intermediate_size,
                  dropout=tiny.dropout, attention_dropout=tiny.dropout, max_position_embeddings=max_length + 2)
    else:
        # RoBERTa/XLM-R number positions from padding_idx + 1, so they need pad + 1 extra slots. Their size-1
        # type vocabulary only where the tokenizer gives no token_type_ids: a BERT-style one (mBERT's, with a
        # tiny RoBERTa) returns 0 and 1 for a pair, an IndexError at the chain's first pair batch
        types = 1 if tiny.arch in _NO_TYPE_IDS and "token_type_ids" not in tokenizer.model_input_names else 2
        kw = dict(hidden_size=tiny.hidden_size, num_hidden_layers=tiny.num_layers, num_attention_heads=tiny.num_heads,
                  intermediate_size=tiny.intermediate_size, hidden_dropout_prob=tiny.dropout,
                  attention_probs_dropout_prob=tiny.dropout, max_position_embeddings=max_length + pad + 2,
                  type_vocab_size=types)
    return AutoConfig.for_model(tiny.arch, **common, **kw)


def input_limit(config) -> int | None:
    """The most tokens a pretrained encoder takes in one input: its absolute position table (RoBERTa and
    XLM-R number positions from padding_idx + 1: 514 embeddings, 512 tokens); None where positions are
    relative (XLNet; DeBERTa-v2/v3, whose ``position_biased_input`` is false)."""
    n = getattr(config, "max_position_embeddings", None)
    if n is None or config.model_type == "xlnet" or getattr(config, "position_biased_input", True) is False:
        return None
    if config.model_type in ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"):
        n -= (config.pad_token_id or 0) + 1
    return n


def check_model(mcfg: ModelConfig, gradient_checkpointing: bool = False, longest: tuple[int, str] | None = None,
                tokenizer=None):
    """Fail early (one line) when a named model's config cannot be had, its architecture cannot do the
    gradient checkpointing ``hardware`` asks for, ``longest`` = (tokens, the setting asking for them) is
    beyond its position table, or ``model.tokenizer`` (``tokenizer``, loaded) has more tokens than its
    embedding table (each an index error mid-chain on CPU, a device-side assert on a GPU). Returns the
    model's config."""
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    with _from_hub(f"model '{mcfg.name}'", "cannot load its config", mcfg.name):
        config = AutoConfig.from_pretrained(_local(mcfg.name), revision=mcfg.revision, trust_remote_code=mcfg.trust_remote_code)
    cls = getattr(transformers, MODEL_MAPPING_NAMES.get(config.model_type, ""), None)
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(f"model.name: '{mcfg.name}' is an encoder-decoder ({config.model_type}); itt trains encoders "
                        "(XLM-R, mBERT, BERT, RoBERTa, XLNet, ...): give one")
    if cls is not None and "input_ids" not in inspect.signature(cls.forward).parameters:  # (ViT, Wav2Vec2: a traceback
        # at the first training step)
        raise UserError(f"model.name: '{mcfg.name}' ({config.model_type}, {cls.__name__}) does not take text (no "
                        "input_ids); itt trains text encoders (XLM-R, mBERT, BERT, RoBERTa, XLNet, ...): give one")
    if is_decoder_only(config) and mcfg.pooling == "first":
        raise UserError(f"model.pooling: first, but '{mcfg.name}' is a decoder ({config.model_type}: each token sees "
                        "only those before it, so the first sees nothing of the input); give last or mean (auto: last)")
    vocab = getattr(config, "vocab_size", None)
    if mcfg.tokenizer is not None and tokenizer is not None and isinstance(vocab, int) and len(tokenizer) > vocab:
        raise UserError(f"model.tokenizer: '{mcfg.tokenizer}' has {len(tokenizer)} tokens, but model '{mcfg.name}' "
                        f"embeds {vocab} (its vocab_size); give the model's own tokenizer")
    limit = input_limit(config)
    if longest is not None and limit is not None and longest[0] > limit:
        raise UserError(f"{longest[1]}: {longest[0]} tokens, but model '{mcfg.name}' takes at most {limit} "
                        f"(its position table); give {limit} or less")
    if gradient_checkpointing and cls is not None and not cls.supports_gradient_checkpointing:
        raise UserError(f"hardware.gradient_checkpointing: model '{mcfg.name}' ({cls.__name__}) does not support it "
                        "in transformers; set it to false")
    return config


def build_encoder(mcfg: ModelConfig, tokenizer, *, max_length: int, sdpa: bool):
    """The encoder: random init from ``mcfg.tiny`` or pretrained weights from ``mcfg.name``."""
    from transformers import AutoConfig, AutoModel

    if mcfg.tiny is not None:
        config = tiny_config(mcfg.tiny, tokenizer, max_length)
        return _drop_unused(AutoModel.from_config(config, attn_implementation=_attn_impl(config, sdpa)))
    kw = dict(revision=mcfg.revision, trust_remote_code=mcfg.trust_remote_code)
    with _from_hub(f"model '{mcfg.name}'", "cannot load its config", mcfg.name):
        config = AutoConfig.from_pretrained(_local(mcfg.name), **kw)
    with _from_hub(f"model '{mcfg.name}'", "cannot load its weights", mcfg.name):
        model = AutoModel.from_pretrained(_local(mcfg.name), config=config, attn_implementation=_attn_impl(config, sdpa), **kw)
    return _drop_unused(model)


def use_gradient_checkpointing(encoder, on: bool) -> None:
    """``hardware.gradient_checkpointing``: 🤗's activation checkpointing on the encoder (non-reentrant,
    as PyTorch recommends; the RNG state is replayed, so dropout masks and the numbers stay the same)."""
    if not on:
        return
    if not getattr(encoder, "supports_gradient_checkpointing", False):
        raise UserError(f"hardware.gradient_checkpointing: {type(encoder).__name__} ({encoder.config.model_type}) "
                        "does not support it in transformers; set it to false")
    kwargs = {"use_reentrant": False}
    if hasattr(encoder, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed it
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _drop_unused(model):
    """Heads pool the hidden states themselves; an unused pooler has no gradient, which DDP rejects (with
    several workers per trial). XLNet's ``mask_emb`` serves only its permutation-LM targets (``target_mapping``):
    frozen, so that DDP does not wait for its gradient either (the optimizer skips it; it had none before)."""
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    if isinstance(getattr(model, "mask_emb", None), torch.nn.Parameter):
        model.mask_emb.requires_grad_(False)
    return model


def pooling_for(mcfg: ModelConfig, encoder) -> str:
    """``model.pooling``; auto: the token that has seen the whole input, the last for XLNet and decoders
    (as 🤗's XLNet and GPT-2 sequence classifiers pool), else the first ([CLS], <s>)."""
    if mcfg.pooling != "auto":
        return mcfg.pooling
    return summary_token(encoder.config)


def summary_token(config) -> str:
    """Where an encoder's whole-input token is: "last" for XLNet and decoders, else "first" ([CLS], <s>)."""
    return "last" if config.model_type == "xlnet" or is_decoder_only(config) else "first"


def is_decoder_only(config) -> bool:
    """A causal language model (GPT-2, Llama, BLOOM, XGLM, ...): each token attends only to those before it.
    Told by transformers' mappings: a causal-LM head and no masked-LM head; XLNet, in that mapping too,
    reads both sides. An architecture the mappings do not know (remote code) counts as an encoder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    t = config.model_type
    return t in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and t not in MODEL_FOR_MASKED_LM_MAPPING_NAMES and t != "xlnet"


def hidden_size(encoder) -> int:
    c = encoder.config
    return int(getattr(c, "hidden_size", None) or getattr(c, "d_model", None) or c.dim)


# --------------------------------------------------------------------------- heads
def head_dropout(encoder: nn.Module, default: float = 0.1) -> float:
    """The dropout a task head uses: the encoder config's, as 🤗's own heads do (BertForSequenceClassification:
    ``classifier_dropout``, else ``hidden_dropout_prob``; XLNet and others: ``dropout``)."""
    cfg = getattr(encoder, "config", None)
    for name in ("classifier_dropout", "hidden_dropout_prob", "dropout"):
        value = getattr(cfg, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return default


class ClassificationHead(nn.Module):
    """dropout → dense → tanh → dropout → projection, as in the RoBERTa/XLM-R classification head."""

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = self.dropout(pooled)
        x = torch.tanh(self.dense(x))
        return self.out(self.dropout(x))


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """First token, last non-pad token (works for left and right padding), or masked mean."""
    if how == "first":
        # with left padding the first real token is not at 0
        idx = attention_mask.float().argmax(dim=1)
        return hidden[torch.arange(hidden.size(0), device=hidden.device), idx]
    if how == "last":
        rev = attention_mask.flip(dims=[1]).float().argmax(dim=1)
        idx = attention_mask.size(1) - 1 - rev
        return hidden[torch.arange(hidden.size(0), device=hidden.device), idx]
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


class TaskModel(nn.Module):
    """Encoder + one task head; returns logits (``[batch, num_labels]``, or ``[batch]`` for regression)."""

    def __init__(self, encoder: nn.Module, head: nn.Module, pooling: str, regression: bool):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.pooling = pooling
        self.regression = regression

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_):
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        logits = self.head(pool(hidden, attention_mask, self.pooling))
        return logits.squeeze(-1) if self.regression else logits

    def loss(self, logits, labels):
        if self.regression:
            return torch.nn.functional.mse_loss(logits.float(), labels.float())
        return torch.nn.functional.cross_entropy(logits.float(), labels.long())


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, encoder, tokenizer, head: nn.Module | None = None, meta: dict | None = None) -> None:
    """Encoder weights (safetensors) + config + tokenizer, and the target head if given."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    if head is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(path / "head.safetensors"))
    if meta is not None:
        (path / "itt_meta.json").write_text(json.dumps(meta, indent=2))


# --------------------------------------------------------------------------- heads of the other kinds
def _encode(encoder, input_ids, attention_mask, token_type_ids=None):
    kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
    return encoder(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state


def align_left(x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Shift each row of ``x`` ([batch, seq, ...]) so position j is the j-th real token, whatever the
    padding side (XLNet pads on the left). Labels and offsets index the unpadded sequence."""
    lead = (attention_mask.cumsum(dim=1) == 0).sum(dim=1)  # left-pad count per row
    if not bool(lead.any()):
        return x
    idx = (torch.arange(x.size(1), device=x.device).unsqueeze(0) + lead.unsqueeze(1)) % x.size(1)
    shape = idx.shape + (1,) * (x.dim() - 2)
    return torch.gather(x, 1, idx.view(shape).expand_as(x))


class TokenModel(nn.Module):
    """Encoder + dropout + linear tag classifier per token (BertForTokenClassification's head).
    Logits ``[batch, seq, tags]``; loss on first subwords only (other positions are labelled -100)."""

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size(encoder), num_labels))

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_):
        hidden = _encode(self.encoder, input_ids, attention_mask, token_type_ids)
        return align_left(self.head(hidden), attention_mask)

    @staticmethod
    def loss(logits, labels):
        # labels are padded to the longest row, the inputs (on a GPU) to a multiple of 8 beyond it: the positions
        # past the labels' are padding (align_left put every real token first)
        logits = logits[:, :labels.size(1)]
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1).long(),
                                                 ignore_index=-100)


class SpanModel(nn.Module):
    """Encoder + linear start/end scorer (BertForQuestionAnswering's head). Logits ``[batch, seq, 2]``,
    padding positions at -1e4; labels ``[batch, 2]`` = start and end token of the answer (the [CLS]
    position when the window does not hold it)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden_size(encoder), 2)

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_):
        hidden = _encode(self.encoder, input_ids, attention_mask, token_type_ids)
        logits = align_left(self.head(hidden).float(), attention_mask)
        real = align_left(attention_mask, attention_mask).unsqueeze(-1).bool()
        return logits.masked_fill(~real, -1e4)

    @staticmethod
    def loss(logits, labels):
        labels = labels.long()
        ce = torch.nn.functional.cross_entropy
        return (ce(logits[..., 0], labels[:, 0]) + ce(logits[..., 1], labels[:, 1])) / 2


class ChoiceModel(nn.Module):
    """Encoder + one score per (question, option) pair from the pooled representation
    (BertForMultipleChoice). Inputs ``[batch, options, seq]``; logits ``[batch, options]``."""

    def __init__(self, encoder: nn.Module, pooling: str, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.head = ClassificationHead(hidden_size(encoder), 1, dropout)

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_):
        b, k, t = input_ids.shape
        flat = lambda x: None if x is None else x.reshape(b * k, t)  # noqa: E731
        mask = flat(attention_mask)
        hidden = _encode(self.encoder, flat(input_ids), mask, flat(token_type_ids))
        return self.head(pool(hidden, mask, self.pooling)).view(b, k)

    @staticmethod
    def loss(logits, labels):
        return torch.nn.functional.cross_entropy(logits.float(), labels.long())
