"""The tokenizer families of the real models, on real XQuAD / WikiANN files: answers and words line up.

Every other test tokenizes with WordPiece (the real mBERT vocabulary or one trained on the fly). The
models users run mostly do not: XLM-R and XLNet use a SentencePiece unigram model behind a Metaspace
pre-tokenizer ("▁" marks a word start; XLNet also strips accents and pads on the left with [CLS] last),
RoBERTa byte-level BPE. No Hub here, so each is built the way 🤗 builds it, from a vocabulary trained on
the XQuAD contexts, through the model's own tokenizer class, saved, and loaded through
``itt.models.load_tokenizer`` (AutoTokenizer) as a Hub tokenizer would be.

Checked: a QA training window's answer tokens, read back through the evaluation's character offsets,
give the gold answer (as XQuAD's official evaluation, the SQuAD script, normalises it; a token may carry a comma
past the answer's end, as with any subword tokenizer); a tagging window labels each word once, on its
first subword.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from itt import metrics as M
from itt.config import DataSpec, TaskSpec
from itt.data import load_split
from itt.kinds.qa import featurize_qa
from itt.kinds.tagging import featurize_words
from itt.models import load_tokenizer
from itt.tasks import resolve_task

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    pytest.skip(f"real data folder not found: {SHARED}", allow_module_level=True)

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's and RoBERTa's ids 0-4


def _texts() -> list[str]:
    out = []
    for lang in ("en", "de", "zh", "ru"):
        for art in json.loads((SHARED / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"][:12]:
            for p in art["paragraphs"]:
                out += [p["context"]] + [q["question"] for q in p["qas"]]
    return out


@pytest.fixture(scope="module")
def families(tmp_path_factory) -> dict[str, str]:
    """{family: saved tokenizer folder}: XLM-R-, XLNet- and RoBERTa-style, plus the real mBERT vocabulary."""
    from tokenizers import SentencePieceUnigramTokenizer, Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer, XLMRobertaTokenizer, XLNetTokenizer

    root, texts = tmp_path_factory.mktemp("tokenizers"), _texts()
    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(texts, vocab_size=3000, special_tokens=SPECIALS, unk_token="<unk>")
    pieces = [tuple(p) for p in json.loads(sp.to_str())["model"]["vocab"]]
    XLMRobertaTokenizer(vocab=pieces).save_pretrained(root / "xlmr")
    xlnet_specials = [(t, 0.0) for t in ("<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>")]
    XLNetTokenizer(vocab=xlnet_specials + [p for p in pieces if p[0] not in SPECIALS]).save_pretrained(root / "xlnet")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=3000, special_tokens=SPECIALS,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    RobertaTokenizer(vocab=model["vocab"], merges=merges).save_pretrained(root / "roberta")
    return {"xlmr": str(root / "xlmr"), "xlnet": str(root / "xlnet"), "roberta": str(root / "roberta"),
            "mbert": str(SHARED / "tokenizers" / "bert-base-multilingual-cased")}


def _load(task: str, split: str, lang: str, **spec):
    t = resolve_task(task, {task: TaskSpec(**{split: {lang: DataSpec(**spec)}})})
    return load_split(t, split, lang, data_root=str(SHARED))


@pytest.mark.parametrize("family", ["xlmr", "xlnet", "roberta", "mbert"])
def test_qa_answer_tokens_read_back_as_the_gold_answer(families, family):
    tok = load_tokenizer(families[family])
    assert tok.is_fast and (tok.padding_side == "left") == (family == "xlnet")
    for lang in ("en", "de", "ru"):  # not zh: a vocabulary trained on this little text keeps whole
        ds = _load("xquad", "test", lang, files=f"xquad/xquad.{lang}.json", format="squad").select(range(150))
        # Chinese clauses as one piece, so the answer's end falls inside a token (mBERT: one per character)
        train = featurize_qa(ds, tok, 128, None, train=True)
        ev = featurize_qa(ds, tok, 128, None, train=False)  # the same windows, with the context offsets
        assert len(ev.meta["example"]) == len(train)
        read, em = 0, 0.0
        for i, (s, e) in enumerate(train["labels"]):
            if s == e and train["input_ids"][i][s] == tok.cls_token_id:
                continue  # a window without the whole answer
            offsets, ex = ev.meta["offsets"][i], ev.meta["example"][i]
            assert offsets[s] is not None and offsets[e] is not None, "an answer label outside the context"
            text = ds[ex]["context"][offsets[s][0]:offsets[e][1]]
            em += M.qa([ds[ex]["answer_text"]], [text], lang, "squad")["exact_match"]
            read += 1
        assert read >= 100, f"{family} {lang}: only {read} windows hold their answer"
        assert em / read >= 0.99, f"{family} {lang}: {em / read:.3f} of answers read back"


@pytest.mark.parametrize("family", ["xlmr", "xlnet", "mbert"])
def test_qa_windows_start_doc_stride_apart_and_each_token_has_one_max_context_window(families, family):
    """As XTREME's run_squad.py (squad_convert_example_to_features): a window starts ``doc_stride`` context
    tokens after the previous one, and at decoding a span's start token counts only in the window where it
    has the most context, min(left, right) + 0.01 x the window's context length (the first such window on
    a tie): written out here over every window of every question, against ``max_context``."""
    from itt.kinds.qa import decode, max_context

    tok = load_tokenizer(families[family])
    ds = _load("xquad", "test", "el", files="xquad/xquad.el.json", format="squad").select(range(60))
    ev = featurize_qa(ds, tok, 96, 24, train=False)
    examples, offsets = ev.meta["example"], ev.meta["offsets"]
    by_example: dict[int, list[int]] = {}
    for w, ex in enumerate(examples):
        by_example.setdefault(ex, []).append(w)
    several = 0
    first = {}  # window -> index of its first context token in the context tokenized alone
    for ex, windows in by_example.items():
        alone = [tuple(o) for o in tok(ds[ex]["context"], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
        for w in windows:
            ctx = [tuple(o) for o in offsets[w] if o is not None]
            first[w] = next(i for i in range(len(alone)) if alone[i:i + len(ctx)] == ctx)  # (a window is a run of them)
        assert [first[w] for w in windows] == [24 * i for i in range(len(windows))], (family, ex)
        several += len(windows) > 1
    assert several >= 20  # most Greek contexts need several windows of 96 tokens
    assert ev.meta["context_start"] == [first[w] for w in range(len(examples))]
    mc = max_context(examples, offsets, ev.meta["context_start"])
    best: dict[tuple, tuple] = {}  # (example, context token) -> (score, window)
    for w, (ex, offs) in enumerate(zip(examples, offsets)):
        n = sum(o is not None for o in offs)
        for k in range(n):
            score = min(k, n - 1 - k) + 0.01 * n
            if (ex, first[w] + k) not in best or score > best[(ex, first[w] + k)][0]:
                best[(ex, first[w] + k)] = (score, w)
    for w, (ex, offs) in enumerate(zip(examples, offsets)):
        ctx_k = [i for i, o in enumerate(offs) if o is not None]
        assert [j for j, m in enumerate(mc[w]) if m] == [j for k, j in enumerate(ctx_k) if best[(ex, first[w] + k)][1] == w]
    # a start the window holds without its most context is passed over for the best one it has
    w = next(w for w in range(len(offsets)) if not all(m for m, o in zip(mc[w], offsets[w]) if o is not None))
    s = next(j for j, (m, o) in enumerate(zip(mc[w], offsets[w])) if o is not None and not m)
    start, end = np.zeros(len(offsets[w])), np.zeros(len(offsets[w]))
    start[s], end[s] = 10.0, 10.0
    assert decode(start, end, offsets[w], ds[examples[w]]["context"], n_best=20, max_answer_length=30)[0] == 20.0
    kept = decode(start, end, offsets[w], ds[examples[w]]["context"], n_best=20, max_answer_length=30,
                  is_max_context=mc[w])
    assert kept is None or kept[0] < 20.0


@pytest.mark.parametrize("family", ["xlmr", "xlnet", "roberta"])
def test_tagging_labels_every_word_once_on_its_first_subword(families, family):
    tok = load_tokenizer(families[family])
    for lang in ("de", "ru"):
        ds = _load("panx", "test", lang, files=f"panx_wikiann/wikiann.{lang}.test.conllu", format="conll",
                   conll_columns=(1, 2)).select(range(200))
        words, tags = ds["tokens"][:], ds["label"][:]
        feats, meta = featurize_words(words, tags, tok, 24)  # short windows: long sentences are split
        got = [[None] * len(w) for w in words]
        for ids, labels, (ex, first) in zip(feats["input_ids"], feats["labels"], meta):
            assert len(ids) <= 24
            pos = [j for j, lab in enumerate(labels) if lab != -100]
            for n, j in enumerate(pos):
                assert got[ex][first + n] is None, "a word labelled twice"
                got[ex][first + n] = labels[j]
                assert ids[j] not in tok.all_special_ids
        assert got == tags
        assert len(feats) > len(ds)  # some sentences did not fit one window


@pytest.mark.parametrize("family", ["xlmr", "xlnet", "roberta", "mbert"])
def test_tagging_words_get_the_pieces_of_running_text(families, family):
    """A sentence's words, given one by one, are split into the pieces the same words get in running text
    (what the encoder was trained on). RoBERTa's byte-level BPE marks a word start by the space before it:
    words given without one came out as word-inside pieces ("world" -> 'w', 'orld' instead of 'Ġworld')."""
    tok = load_tokenizer(families[family])
    ds = _load("panx", "test", "de", files="panx_wikiann/wikiann.de.test.conllu", format="conll",
               conll_columns=(1, 2)).select(range(1000))
    # (sentences of ASCII letters only: punctuation and characters outside this small vocabulary are
    # normalised differently word by word)
    words = [ws for ws in ds["tokens"][:] if all(w.isascii() and w.isalpha() for w in ws)]
    assert len(words) >= 30
    before = tok("Ernst von Reichenbach")["input_ids"]
    feats, meta = featurize_words(words, None, tok, 512)
    assert tok("Ernst von Reichenbach")["input_ids"] == before  # (the chain's tokenizer itself is left as it was)
    assert [m[1] for m in meta] == [0] * len(words)  # one window each
    special = set(tok.all_special_ids)
    for ids, ws in zip(feats["input_ids"], words):
        running = tok(" " + " ".join(ws), add_special_tokens=False)["input_ids"]
        assert [i for i in ids if i not in special] == running, (family, ws)


@pytest.mark.parametrize("family", ["xlmr", "mbert"])
def test_qa_doc_stride_check_counts_the_tokenizers_special_tokens(families, family):
    """A window holds max_length less the question and the pair's special tokens: XLM-R/RoBERTa put 4 in a pair
    (<s> q </s></s> c </s>), BERT 3. The check counted 3 for every tokenizer, so an XLM-R doc_stride one below
    its limit passed and made windows that did not overlap (an answer across their border unfindable)."""
    from itt.errors import ConfigError

    tok = load_tokenizer(families[family])
    special = tok.num_special_tokens_to_add(pair=True)
    assert special == {"xlmr": 4, "mbert": 3}[family]
    ds = _load("xquad", "test", "el", files="xquad/xquad.el.json", format="squad").select(range(40))
    limit = 96 - 24 - special  # max_length 96: questions cut to 24 tokens
    with pytest.raises(ConfigError, match=rf"doc_stride {limit} .* no overlap: .* give less than {limit}"):
        featurize_qa(ds, tok, 96, limit, train=False)
    ev = featurize_qa(ds, tok, 96, limit - 1, train=False)
    ex, starts, offsets = ev.meta["example"], ev.meta["context_start"], ev.meta["offsets"]
    pairs = [(w, w + 1) for w in range(len(ex) - 1) if ex[w] == ex[w + 1]]
    assert len(pairs) >= 20  # Greek contexts need several windows
    for a, b in pairs:  # the next window starts inside this one: they overlap
        assert starts[b] < starts[a] + sum(o is not None for o in offsets[a]), (family, a)


def test_itt_rank_embeds_tagging_words_as_running_text(families):
    """`itt rank`'s token features (search/transfer.py) tokenize a tagging task's words as the chain does:
    with RoBERTa's byte-level BPE a word is the piece of running text ('Ġworld'), not a word-inside one."""
    from types import SimpleNamespace

    import torch

    from search.transfer import Embedder, units

    tok = load_tokenizer(families["roberta"])
    seen = []

    class Encoder:  # records what it is given
        def eval(self):
            return self

        def __call__(self, input_ids, attention_mask, **kw):
            seen.extend(input_ids.tolist())
            return SimpleNamespace(last_hidden_state=torch.zeros(*input_ids.shape, 4))

    ds = _load("panx", "test", "de", files="panx_wikiann/wikiann.de.test.conllu", format="conll",
               conll_columns=(1, 2)).select(range(300))
    ds = ds.select([i for i, ws in enumerate(ds["tokens"]) if all(w.isascii() and w.isalpha() for w in ws)][:20])
    assert len(ds) >= 10
    units(resolve_task("panx"), ds, Embedder(Encoder(), tok, max_length=128))
    special = set(tok.all_special_ids) | {tok.pad_token_id}
    got = [[i for i in ids if i not in special] for ids in seen[:len(ds)]]
    assert got == [tok(" " + " ".join(ws), add_special_tokens=False)["input_ids"] for ws in ds["tokens"]]
