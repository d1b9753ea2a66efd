"""A deterministic, generated multilingual toy benchmark for offline runs and tests.

The world: ``N_TOPICS`` topics on a ring, each with its own content words, plus function words.
English and three toy languages name the same concepts; each toy language keeps each English word
form with a probability (its *overlap* with English, drawn word by word from the toy seed) and writes
the rest in its own script, so zero-shot transfer can only ride on shared forms, or on what an
intermediate task aligned. The share of forms kept is that probability on average over toy seeds;
at toy seed 0 (the quickstart's) it is 66%, 56% and 26% (``overlap_shares``):

===========  =======  ==================================
language     overlap  script of its own words
===========  =======  ==================================
``en``       1.00     Latin lowercase
``xa``       0.75     Latin uppercase
``xb``       0.50     Greek
``xc``       0.25     Cyrillic
===========  =======  ==================================

Target ``toy_xnli`` (pair, 3 labels): do premise and hypothesis talk about the same topic, a
neighbouring topic on the ring, or a far one? English train, dev/test in every language.

Intermediate tasks (English unless said), differing in relatedness to the target and difficulty:

* ``toy_topic``  single, 6 labels: the topic of a sentence. Closely related, easy.
* ``toy_align``  pair, 2 labels, **cross-lingual**: is B (a toy language) a translation of A
  (English)? Negatives share length and function words, differ in topic. Teaches word alignment.
* ``toy_length`` single, 2 labels: more than seven words? Unrelated, easy.
* ``toy_parity`` single, 2 labels: an even number of function words? Unrelated, hard; not
  balanced: P(even) = 0.466 (lengths 6-10, function words 1 to length - 2, uniform).
* ``toy_sim``    pair regression: topic similarity (2 = same, 1 = neighbour, 0 = far). Related.

Everything is a pure function of (task, split, language, options): the same call always gives the
same examples, in any process.
"""

from __future__ import annotations

import random
from functools import lru_cache

N_TOPICS = 6
WORDS_PER_TOPIC = 24
N_FUNCTION = 16
LANG_OVERLAP = {"en": 1.0, "xa": 0.75, "xb": 0.5, "xc": 0.25}
LANGS = tuple(LANG_OVERLAP)
_SCRIPTS = {
    "en": ("bdfgklmnprstvz", "aeiou"),
    "xa": ("BDFGKLMNPRSTVZ", "AEIOU"),
    "xb": ("βγδζθκλμνξπρστφχ", "αεηιοω"),
    "xc": ("бвгджзклмнпрстфх", "аеиоуя"),
}
DEFAULTS = {"seed": 0, "n_train": 2000, "n_eval": 400}


def _word(rng: random.Random, lang: str) -> str:
    cons, vow = _SCRIPTS[lang]
    return "".join(rng.choice(cons) + rng.choice(vow) for _ in range(rng.randint(2, 3)))


@lru_cache(maxsize=8)
def lexicon(seed: int = 0) -> dict[str, dict[str, list]]:
    """Word forms per language: ``{lang: {"topics": [[word, ...] per topic], "function": [...]}}``."""
    rng = random.Random(f"toy-lexicon:{seed}")
    seen: set[str] = set()

    def fresh(lang: str) -> str:
        while True:
            w = _word(rng, lang)
            if w not in seen:
                seen.add(w)
                return w

    en_topics = [[fresh("en") for _ in range(WORDS_PER_TOPIC)] for _ in range(N_TOPICS)]
    en_function = [fresh("en") for _ in range(N_FUNCTION)]
    out = {"en": {"topics": en_topics, "function": en_function}}
    for lang, overlap in LANG_OVERLAP.items():
        if lang == "en":
            continue
        lrng = random.Random(f"toy-overlap:{seed}:{lang}")
        out[lang] = {
            "topics": [[w if lrng.random() < overlap else fresh(lang) for w in ws] for ws in en_topics],
            "function": [w if lrng.random() < overlap else fresh(lang) for w in en_function],
        }
    return out


def overlap_shares(seed: int = 0) -> dict[str, float]:
    """Per language, the share of English word forms (content and function words) its lexicon keeps."""
    lex = lexicon(seed)
    forms = lambda lang: [w for ws in lex[lang]["topics"] for w in ws] + lex[lang]["function"]  # noqa: E731
    return {lang: sum(a == b for a, b in zip(forms(lang), forms("en"))) / len(forms("en")) for lang in lex}


def _topic_relation(a: int, b: int) -> int:
    d = min((a - b) % N_TOPICS, (b - a) % N_TOPICS)
    return 0 if d == 0 else (1 if d == 1 else 2)


def _sentence_ids(rng: random.Random, topic: int, length: int | None = None, n_function: int | None = None):
    """A sentence as concept ids: ('t', topic, index) content words and ('f', index) function words."""
    length = length or rng.randint(5, 10)
    n_function = rng.randint(1, length - 3) if n_function is None else n_function
    words = [("t", topic, rng.randrange(WORDS_PER_TOPIC)) for _ in range(length - n_function)]
    words += [("f", rng.randrange(N_FUNCTION)) for _ in range(n_function)]
    rng.shuffle(words)
    return words


def _render(ids, lang: str, lex) -> str:
    table = lex[lang]
    return " ".join(table["topics"][w[1]][w[2]] if w[0] == "t" else table["function"][w[1]] for w in ids)


def generate(task: str, split: str, lang: str = "en", options: dict | None = None) -> list[dict]:
    """Examples of one toy task split, as rows with the task's fields, ``label`` and ``id``."""
    opts = {**DEFAULTS, **(options or {})}
    if task not in TASKS:
        raise KeyError(task)
    if lang not in LANG_OVERLAP:
        raise KeyError(lang)
    lex = lexicon(int(opts["seed"]))
    n = int(opts["n_train"] if split == "train" else opts["n_eval"])
    rng = random.Random(f"toy:{opts['seed']}:{task}:{split}:{lang}")
    rows = []
    for i in range(n):
        row = TASKS[task](rng, lang, lex, i)
        row["id"] = f"{task}-{split}-{lang}-{i}"
        rows.append(row)
    return rows


def _xnli(rng, lang, lex, i):
    label = i % 3  # balanced classes
    a = rng.randrange(N_TOPICS)
    b = [t for t in range(N_TOPICS) if _topic_relation(a, t) == label]
    b = rng.choice(b)
    return {
        "premise": _render(_sentence_ids(rng, a), lang, lex),
        "hypothesis": _render(_sentence_ids(rng, b, length=rng.randint(4, 6)), lang, lex),
        "label": label,
    }


def _topic(rng, lang, lex, i):
    t = i % N_TOPICS
    return {"sentence": _render(_sentence_ids(rng, t), "en", lex), "label": t}


def _align(rng, lang, lex, i):
    other = rng.choice([x for x in LANGS if x != "en"])
    a_topic = rng.randrange(N_TOPICS)
    ids = _sentence_ids(rng, a_topic)
    label = i % 2
    if label:
        b_ids = ids
    else:  # same shape and function words, other topic: only content words tell them apart
        b_topic = rng.choice([t for t in range(N_TOPICS) if t != a_topic])
        b_ids = [("t", b_topic, rng.randrange(WORDS_PER_TOPIC)) if w[0] == "t" else w for w in ids]
    return {"sentence1": _render(ids, "en", lex), "sentence2": _render(b_ids, other, lex), "label": label}


def _length(rng, lang, lex, i):
    label = i % 2
    length = rng.randint(8, 10) if label else rng.randint(4, 7)
    return {"sentence": _render(_sentence_ids(rng, rng.randrange(N_TOPICS), length=length), "en", lex), "label": label}


def _parity(rng, lang, lex, i):
    length = rng.randint(6, 10)
    n_f = rng.randint(1, length - 2)
    return {
        "sentence": _render(_sentence_ids(rng, rng.randrange(N_TOPICS), length=length, n_function=n_f), "en", lex),
        "label": int(n_f % 2 == 0),
    }


def _sim(rng, lang, lex, i):
    a, b = rng.randrange(N_TOPICS), rng.randrange(N_TOPICS)
    return {
        "sentence1": _render(_sentence_ids(rng, a), "en", lex),
        "sentence2": _render(_sentence_ids(rng, b), "en", lex),
        "label": float(2 - _topic_relation(a, b)),
    }


TASKS = {
    "toy_xnli": _xnli,
    "toy_topic": _topic,
    "toy_align": _align,
    "toy_length": _length,
    "toy_parity": _parity,
    "toy_sim": _sim,
}


def corpus(options: dict | None = None) -> list[str]:
    """Every word form of every language (for training a tokenizer on the fly)."""
    lex = lexicon(int({**DEFAULTS, **(options or {})}["seed"]))
    return [" ".join(w for ws in lex[lang]["topics"] for w in ws) + " " + " ".join(lex[lang]["function"]) for lang in LANGS]
