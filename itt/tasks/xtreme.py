"""The structured-prediction, QA and retrieval tasks of XTREME (Hu et al., 2020), and the English QA and
multiple-choice intermediate tasks of Phang et al. (2020), with their public 🤗 Hub sources.

Targets: PAN-X (40 languages), UD-POS (33), XQuAD (11), MLQA (7), TyDiQA-GoldP (9), BUCC 2018 (4),
Tatoeba (36). Intermediate (English): SQuAD v1.1, CommonsenseQA, HellaSwag, Cosmos QA.
Languages and the per-task XTREME metric follow XTREME's ``evaluate.py``. Hub configs are those of
``google/xtreme`` (parquet); confirm names with ``datasets.get_dataset_config_names`` when online.
"""

from __future__ import annotations

from itt.config import DataSpec
from itt.tasks import register
from itt.tasks._base import Kind, Task

XTREME = "google/xtreme"

NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")  # google/xtreme PAN-X order
UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")

PANX_LANGS = tuple("ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru ja ka ko th "
                   "sw yo my zh kk tr et fi hu".split())
# google/xtreme names UD-POS configs by language name
UDPOS_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}
XQUAD_LANGS = tuple("en es de el ru tr ar vi th zh hi".split())
MLQA_LANGS = tuple("en es de ar hi vi zh".split())
TYDIQA_NAMES = {"en": "english", "ar": "arabic", "bn": "bengali", "fi": "finnish", "id": "indonesian",
                "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu"}
BUCC_LANGS = ("de", "fr", "ru", "zh")
# Tatoeba pairs are named by ISO 639-3 codes (LASER's test set)
TATOEBA_ISO3 = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa", "et": "est",
    "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind",
    "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
    "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl",
    "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
}


def _en_first(langs) -> tuple[str, ...]:
    langs = tuple(langs)
    return (("en",) if "en" in langs else ()) + tuple(sorted(set(langs) - {"en"}))


def _hub(config: str | None, split: str, path: str = XTREME, **kw) -> DataSpec:
    return DataSpec(hub=path, config=config, split=split, **kw)


def _per_lang(langs, make) -> dict[str, DataSpec]:
    return {lang: make(lang) for lang in langs}


SQUAD_TRAIN = _hub("plain_text", "train", "rajpurkar/squad")

# --------------------------------------------------------------------------- tagging
register(Task(
    name="panx", kind=Kind.TOKEN, fields=("tokens",), labels=NER_TAGS, metric="f1", languages=_en_first(PANX_LANGS),
    train=_hub("PAN-X.en", "train", columns={"label": "ner_tags"}),
    dev=_hub("PAN-X.{lang}", "validation", columns={"label": "ner_tags"}),
    test=_hub("PAN-X.{lang}", "test", columns={"label": "ner_tags"}),
    description="PAN-X / WikiANN NER (Pan et al., 2017; Rahimi et al. splits), entity-level F1 (seqeval).",
))
# google/xtreme's UD-POS has no validation split for Kazakh (train and test), Tagalog, Thai and Yoruba (test only)
UDPOS_NO_DEV = ("kk", "tl", "th", "yo")
_udpos = lambda split, langs=UDPOS_NAMES: _per_lang(langs, lambda lang: _hub(  # noqa: E731
    f"udpos.{UDPOS_NAMES[lang]}", split, columns={"label": "pos_tags"}))
register(Task(
    name="udpos", kind=Kind.TOKEN, fields=("tokens",), labels=UPOS, metric="accuracy",
    languages=_en_first(UDPOS_NAMES), train=_hub("udpos.English", "train", columns={"label": "pos_tags"}),
    dev=_udpos("validation", [lang for lang in UDPOS_NAMES if lang not in UDPOS_NO_DEV]), test=_udpos("test"),
    description="Universal Dependencies POS (UPOS, 17 tags); token accuracy, plus XTREME's seqeval F1 (its task score).",
))

# --------------------------------------------------------------------------- question answering
register(Task(
    name="squad", kind=Kind.QA, fields=("question", "context"), labels=None, metric="f1", languages=("en",),
    train=SQUAD_TRAIN, dev=_hub("plain_text", "validation", "rajpurkar/squad"),
    metadata={"qa_normalization": "squad"},
    description="SQuAD v1.1 (Rajpurkar et al., 2016): English extractive QA; intermediate task and the QA targets' train set.",
))
register(Task(
    name="xquad", kind=Kind.QA, fields=("question", "context"), labels=None, metric="f1",
    languages=_en_first(XQUAD_LANGS), train=SQUAD_TRAIN, dev=None, test=_hub("XQuAD.{lang}", "validation"),
    metadata={"qa_normalization": "squad"},
    description="XQuAD (Artetxe et al., 2020): SQuAD dev translated into 10 languages; test only (no dev split).",
))
register(Task(
    name="mlqa", kind=Kind.QA, fields=("question", "context"), labels=None, metric="f1", languages=_en_first(MLQA_LANGS),
    train=SQUAD_TRAIN, dev=_hub("MLQA.{lang}.{lang}", "validation"), test=_hub("MLQA.{lang}.{lang}", "test"),
    metadata={"qa_normalization": "mlqa"},
    description="MLQA (Lewis et al., 2020), context and question in the same language; MLQA's language-specific scoring.",
))
_tydi = lambda: _per_lang(TYDIQA_NAMES, lambda lang: _hub("tydiqa", "validation",  # noqa: E731
                                                         id_prefix=f"{TYDIQA_NAMES[lang]}-"))
register(Task(
    name="tydiqa", kind=Kind.QA, fields=("question", "context"), labels=None, metric="f1",
    languages=_en_first(TYDIQA_NAMES), train=_hub("tydiqa", "train", id_prefix="english-"), dev=None, test=_tydi(),
    metadata={"qa_normalization": "squad"},
    description="TyDiQA-GoldP (Clark et al., 2020): gold passage; English train, per-language dev as test.",
))

# --------------------------------------------------------------------------- retrieval (no fine-tuning)
_pairs = {"source": "source_sentence", "target": "target_sentence"}
register(Task(
    name="tatoeba", kind=Kind.RETRIEVAL, fields=("source", "target"), labels=None, metric="accuracy",
    languages=tuple(sorted(TATOEBA_ISO3)), train=None, dev=None,
    test=_per_lang(TATOEBA_ISO3, lambda lang: _hub(f"tatoeba.{TATOEBA_ISO3[lang]}", "validation", columns=_pairs)),
    description="Tatoeba (Artetxe & Schwenk, 2019): nearest-neighbour translation retrieval, accuracy; no fine-tuning.",
))
register(Task(
    name="bucc2018", kind=Kind.RETRIEVAL, fields=("source", "target"), labels=None, metric="f1", languages=BUCC_LANGS,
    train=None, dev=_hub("bucc18.{lang}", "validation", columns=_pairs), test=_hub("bucc18.{lang}", "test", columns=_pairs),
    description="BUCC 2018 bitext mining (Zweigenbaum et al., 2018): ratio-margin mining, F1 at the threshold "
                "chosen on dev gold; no fine-tuning.",
    # google/xtreme's bucc18 configs hold the gold pairs alone, not the corpora they are mined from
    metadata={"retrieval_pooling": "summary",  # XTREME's run_bucc2018.sh: --pool_type cls (Tatoeba's: mean)
              "hub_unusable": "the Hub's google/xtreme bucc18 configs hold only the gold pairs, without the "
                              "sentences they are mined from, so F1 there is not BUCC's: point tasks.bucc2018.dev "
                              "and .test at the BUCC 2018 files (format: bucc: source, target and gold files; "
                              "configs/bucc_xlmr_base.yaml)"},
))

# --------------------------------------------------------------------------- multiple choice (intermediate)
_letters = {c: i for i, c in enumerate("ABCDE")}
register(Task(
    name="commonsenseqa", kind=Kind.CHOICE, fields=("question", "choices"), labels=None, metric="accuracy",
    train=_hub(None, "train", "tau/commonsense_qa", columns={"choices": "choices.text", "label": "answerKey"},
               label_map=_letters),
    dev=_hub(None, "validation", "tau/commonsense_qa", columns={"choices": "choices.text", "label": "answerKey"},
             label_map=_letters),
    description="CommonsenseQA (Talmor et al., 2019): 5-way multiple choice.", metadata={"choices": 5},
))
# Rowan/hellaswag's main branch holds only its loading script too (its Parquet PR #7 is unmerged): the Hub's
# Parquet conversion of it, as for Cosmos QA below
_hs = dict(columns={"question": "ctx", "choices": "endings"}, revision="refs/convert/parquet")
register(Task(
    name="hellaswag", kind=Kind.CHOICE, fields=("question", "choices"), labels=None, metric="accuracy",
    train=_hub(None, "train", "Rowan/hellaswag", **_hs), dev=_hub(None, "validation", "Rowan/hellaswag", **_hs),
    description="HellaSwag (Zellers et al., 2019): pick the ending of a context, 4-way.", metadata={"choices": 4},
))
_cq = {"question": ["context", "question"], "choices": ["answer0", "answer1", "answer2", "answer3"]}
# allenai/cosmos_qa's main branch holds only its loading script, which datasets 4+ no longer runs: the Hub's
# Parquet conversion of it (refs/convert/parquet, as for other script-only datasets such as ybisk/piqa)
_cq_hub = dict(columns=_cq, revision="refs/convert/parquet")
register(Task(
    name="cosmosqa", kind=Kind.CHOICE, fields=("question", "choices"), labels=None, metric="accuracy",
    train=_hub(None, "train", "allenai/cosmos_qa", **_cq_hub), dev=_hub(None, "validation", "allenai/cosmos_qa", **_cq_hub),
    description="Cosmos QA (Huang et al., 2019): commonsense reading comprehension, 4-way.", metadata={"choices": 4},
))
