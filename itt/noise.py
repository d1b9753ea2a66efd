"""Seeded character- and word-level noise for the perturbation score.

Each text is perturbed by an RNG seeded from (seed, example id, field), so the noisy dev set is the
same in every run and every process.
"""

from __future__ import annotations

import random


def perturb(text: str, *, char_rate: float, word_rate: float, rng: random.Random) -> str:
    """``text`` with, in expectation, ``word_rate`` edits per word and ``char_rate`` per letter.

    Each word position draws once: drop the word (never the last one left), or swap it with the next; then each
    letter position draws once: substitute, delete, insert a letter after it, or swap it with the next
    character. An edit that would change nothing is not drawn (a swap with an equal neighbour, a substitution
    by the same letter, or none where no neighbour follows): the share asked is the share of positions edited.
    """
    words = _edit(text.split(), word_rate, rng, _word_ops)
    chars = list(" ".join(words))
    alphabet = sorted({c for c in chars if c.isalpha()}) or list("abcdefghijklmnopqrstuvwxyz")
    return "".join(_edit(chars, char_rate, rng, lambda xs, j: _char_ops(xs, j, alphabet)))


def _edit(items: list[str], rate: float, rng: random.Random, ops) -> list[str]:
    """Walk ``items`` once: at each position, with probability ``rate``, one of the edits ``ops(items, i)``
    offers there (each returns the position to go on from). A swap carries the item one further, where it
    draws again, so every position draws exactly once."""
    items, i = list(items), 0
    while i < len(items):
        offered = ops(items, i)
        if offered and rng.random() < rate:
            i = rng.choice(offered)(items, i, rng)
        else:
            i += 1
    return items


def _drop(xs: list, i: int, rng) -> int:
    del xs[i]
    return i  # (the next item now stands here and draws)


def _swap(xs: list, i: int, rng) -> int:
    xs[i], xs[i + 1] = xs[i + 1], xs[i]
    return i + 1


def _word_ops(words: list[str], i: int) -> list:
    return ([_drop] if len(words) > 1 else []) + ([_swap] if i + 1 < len(words) and words[i + 1] != words[i] else [])


def _char_ops(chars: list[str], j: int, alphabet: list[str]) -> list:
    c = chars[j]
    if not c.isalpha():
        return []
    others = [a for a in alphabet if a != c]

    def substitute(xs, j, rng):
        xs[j] = rng.choice(others)
        return j + 1

    def insert(xs, j, rng):
        xs.insert(j + 1, rng.choice(alphabet))
        return j + 2

    return [substitute] * bool(others) + [_drop, insert] + ([_swap] if j + 1 < len(chars) and chars[j + 1] != c else [])


def perturb_dataset(ds, fields, *, char_rate: float, word_rate: float, seed: int):
    """A copy of ``ds`` with every text field perturbed (ids and labels unchanged)."""

    def apply(row):
        for f in fields:
            rng = random.Random(f"{seed}:{row['id']}:{f}")
            row[f] = perturb(row[f], char_rate=char_rate, word_rate=word_rate, rng=rng)
        return row

    return ds.map(apply)
