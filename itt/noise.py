"""Seeded character- and word-level noise for the perturbation score.

Each text is perturbed by an RNG seeded from (seed, example id, field), so the noisy dev set is the
same in every run and every process.
"""

from __future__ import annotations

import random


def perturb(text: str, *, char_rate: float, word_rate: float, rng: random.Random) -> str:
    # word level: drop a word, or swap it with the next one
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        r = rng.random()
        if r < word_rate / 2 and (out or i + 1 < len(words)):
            i += 1  # drop (never the last word left: "a b" lost both, "a" none)
            continue
        if r < word_rate and i + 1 < len(words):
            out += [words[i + 1], words[i]]  # swap
            i += 2
            continue
        out.append(words[i])
        i += 1
    # character level: substitute, delete, insert, or swap with the next character (letters only)
    chars = list(" ".join(out))
    alphabet = [c for c in set(chars) if c.isalpha()] or list("abcdefghijklmnopqrstuvwxyz")
    alphabet.sort()
    res: list[str] = []
    j = 0
    while j < len(chars):
        c = chars[j]
        if c.isalpha() and rng.random() < char_rate:
            op = rng.randrange(4)
            if op == 0:
                res.append(rng.choice(alphabet))
            elif op == 1:
                pass
            elif op == 2:
                res += [c, rng.choice(alphabet)]
            elif j + 1 < len(chars):
                res += [chars[j + 1], c]
                j += 1
            else:
                res.append(c)
        else:
            res.append(c)
        j += 1
    return "".join(res)


def perturb_dataset(ds, fields, *, char_rate: float, word_rate: float, seed: int):
    """A copy of ``ds`` with every text field perturbed (ids and labels unchanged)."""

    def apply(row):
        for f in fields:
            rng = random.Random(f"{seed}:{row['id']}:{f}")
            row[f] = perturb(row[f], char_rate=char_rate, word_rate=word_rate, rng=rng)
        return row

    return ds.map(apply)
