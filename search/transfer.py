"""A transferability prior over orders: seconds of forward passes instead of GPU hours of chains.

``itt rank CONFIG`` and ``search.prior: transferability`` use it. On the config's own encoder (the
initial one every chain starts from, frozen, seeded, eval mode, no grad) it measures, per candidate
intermediate task ``s`` and the target ``T``:

* **LogME** (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
  ICML 2021, Algorithm 1): the log marginal evidence of a Bayesian linear model of the labels on the
  frozen features, maximised over the prior precision alpha and the noise precision beta by the
  paper's fixed-point iteration with one SVD; per class one-vs-rest for classification, averaged over
  classes; per output for regression. ``logme`` below.
* **forward transfer** ``s -> T``: the change in the target's LogME when the directions of s's LogME
  model (its posterior mean weights) are amplified in the target's features (``forward_transfer``):
  a linearised stand-in for the encoder after a stage on s. The same measure between consecutive
  tasks ``a -> b`` gives the links of an order.
* **text-embedding similarity** (Poth et al., "What to Pre-Train on? Efficient Intermediate Task
  Selection", EMNLP 2021, TextEmb): the cosine between the mean of the encoder's mean-pooled
  embeddings of s's training examples and that of the target's evaluation text in each target
  language, averaged over the languages.

Per task: ``u(s) = (z(LogME(s)) + z(transfer(s -> T)) + z(similarity(s))) / 3``, each z-scored over the
candidates (a task whose LogME is undefined counts 0 in those thirds). LogME(s) is the paper's own
use: how well the encoder's features already fit s (Nguyen et al.'s forward transferability into
each task of a sequence, here from the initial encoder). Per order ``t_1 .. t_k`` (a forward sequence
transferability as in Nguyen et al., "Sequence Transferability and Task Order Selection in Continual
Learning", arXiv 2502.06544: a sum of the transfers along the sequence, here the link to the target
last):

    score(t_1..t_k) = sum_i w_i * (u(t_i) + LINK * z(transfer(t_{i-1} -> t_i)))    (no link for i = 1)
    w_i = DECAY ** (k - i)        (the last stage, next to the target fine-tune, weighs 1)

The F baseline scores 0 (an order of average tasks scores about 0 too: the prior ranks tasks and
their arrangement, it cannot say whether intermediate training pays at all). With a finished search
(``--from``), ``calibrate`` maps the prior to the metric's scale: a ridge fit of the measured scores on
the prior score and a per-task effect (weighted by position like ``u``); measured orders keep their
measured mean.

What each kind gives LogME (one row of features per unit, a label per row): classification =
the pooled example and its label (regression: the real target); tagging = the first subword of each
word and its tag, flattened; extractive QA = each context token of the (question, context) window,
label 1 inside the answer span (span detection as token classification); multiple choice = each
(question, option) pair, label 1 for the right one; retrieval tasks have no labels (similarity only).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from itt.errors import UserError
from search.space import order_tasks

SAMPLE = 256  # examples per task (a seeded sample of its capped training data)
MAX_ROWS = 2048  # rows per task for token-level kinds (tokens, not examples)
EVAL_SAMPLE = 128  # evaluation examples per target language (similarity)
DECAY = 0.5  # weight of a stage relative to the one after it
LINK = 0.5  # weight of the consecutive-task transfer relative to a task's own score
AMPLIFY = 3.0  # forward transfer: the source's directions scaled by this in the target's features


# ------------------------------------------------------------------ LogME (You et al., ICML 2021)
def logme(features: np.ndarray, labels: np.ndarray, *, regression: bool = False, tol: float = 1e-7,
          max_iter: int = 1000) -> float:
    """LogME score: the maximised log evidence per example, mean over classes (or outputs).

    >>> rng = np.random.default_rng(0); f = rng.normal(size=(100, 8))
    >>> logme(f, (f[:, 0] > 0).astype(int)) > logme(f, rng.integers(0, 2, 100))
    True
    """
    return logme_fit(features, labels, regression=regression, tol=tol, max_iter=max_iter)[0]


def logme_fit(features: np.ndarray, labels: np.ndarray, *, regression: bool = False, tol: float = 1e-7,
              max_iter: int = 1000) -> tuple[float, np.ndarray]:
    """(LogME score, the posterior mean weights ``m`` per class or output, shape [C, D]).

    Classification: one-vs-rest 0/1 targets for each class present in ``labels``; regression: each
    column of ``labels`` (a vector is one column)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(y) or len(f) < 2:
        raise ValueError(f"logme: features {f.shape} and labels {y.shape} do not match")
    if regression:
        Y = y.astype(np.float64).reshape(len(y), -1)
    else:
        Y = np.stack([(y == c).astype(np.float64) for c in np.unique(y)], axis=1)
    D = f.shape[1]
    # the SVD trick: F^T F = V diag(sigma) V^T once; every iteration is then O(D) per class
    _, s, vh = np.linalg.svd(f, full_matrices=False)
    sigma = np.zeros(D)
    sigma[:len(s)] = s ** 2
    V = np.zeros((D, D))
    V[:, :len(s)] = vh.T
    if len(s) < D:  # rank-deficient (N < D): complete the basis; those directions have sigma = 0
        q, _ = np.linalg.qr(np.hstack([vh.T, np.eye(D)]))
        V[:, len(s):] = q[:, len(s):D]
    evidences, ms = [], []
    for j in range(Y.shape[1]):
        e, m = _max_evidence(f, Y[:, j], V, sigma, tol=tol, max_iter=max_iter)
        evidences.append(e)
        ms.append(m)
    return float(np.mean(evidences)), np.stack(ms)


def _max_evidence(f, y, V, sigma, *, tol: float, max_iter: int) -> tuple[float, np.ndarray]:
    """Algorithm 1 of You et al. (2021) for one target vector: the fixed point of
    gamma = sum(beta*sigma / (alpha + beta*sigma)), m = beta A^-1 F^T y (A = alpha I + beta F^T F),
    alpha = gamma / m^T m, beta = (N - gamma) / ||F m - y||^2; then the log evidence (their eq. 2)
    at the converged alpha, beta, divided by N."""
    N = f.shape[0]
    proj = V.T @ (f.T @ y)  # F^T y in the eigenbasis of F^T F
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        m = V @ (beta * proj / (alpha + beta * sigma))
        gamma = float(np.sum(beta * sigma / (alpha + beta * sigma)))
        new_alpha = gamma / max(float(m @ m), 1e-300)
        new_beta = (N - gamma) / max(float(np.sum((f @ m - y) ** 2)), 1e-300)
        done = abs(new_alpha / new_beta - alpha / beta) <= tol * (alpha / beta)
        alpha, beta = new_alpha, new_beta
        if done:
            break
    m = V @ (beta * proj / (alpha + beta * sigma))
    return log_evidence(f, y, alpha, beta, V=V, sigma=sigma, m=m) / N, m


def log_evidence(f, y, alpha: float, beta: float, *, V=None, sigma=None, m=None) -> float:
    """log p(y | F, alpha, beta) of y = F w + noise, w ~ N(0, alpha^-1 I), noise ~ N(0, beta^-1 I)
    (You et al. 2021, eq. 2), through the eigendecomposition of F^T F."""
    N, D = f.shape
    if V is None:
        sigma, V = np.linalg.eigh(f.T @ f)
        sigma = np.clip(sigma, 0, None)
    if m is None:
        m = V @ (beta * (V.T @ (f.T @ y)) / (alpha + beta * sigma))
    return float(D / 2 * math.log(alpha) + N / 2 * math.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                 - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * float(m @ m) - N / 2 * math.log(2 * math.pi))


def forward_transfer(m_src: np.ndarray, f_tgt: np.ndarray, y_tgt: np.ndarray, *, regression: bool,
                     gain: float = AMPLIFY) -> float:
    """How much the source task's directions help a linear model of the target: LogME of the target
    with the span of the source's LogME weights ``m_src`` amplified in its features (scaled by
    ``gain``), minus LogME on the features as they are. Amplifying a subspace is LogME's isotropic
    prior made anisotropic towards the source (w ~ N(0, alpha^-1 (I + (gain^2 - 1) U U^T)), U an
    orthonormal basis of the source's directions): a linearised stand-in for the encoder after a
    stage on the source, which moves its features towards what separates the source's labels."""
    u, _ = np.linalg.qr(np.asarray(m_src, dtype=np.float64).T)  # D x C orthonormal basis
    f = np.asarray(f_tgt, dtype=np.float64)
    shaped = f + (gain - 1.0) * (f @ u) @ u.T
    return logme(shaped, y_tgt, regression=regression) - logme(f, y_tgt, regression=regression)


# ------------------------------------------------------------------ features from the config's encoder
@dataclass
class Units:
    """One task's sample for LogME: features per unit (example, token or option) and their labels."""

    features: np.ndarray | None
    labels: np.ndarray | None
    regression: bool = False
    why_none: str = ""  # why LogME is not defined for this task
    embedding: np.ndarray | None = None  # the mean pooled embedding of its examples (TextEmb)


class Embedder:
    """The config's initial encoder, frozen: mean-pooled and per-token hidden states, in batches."""

    def __init__(self, encoder, tokenizer, *, max_length: int, batch_size: int = 64):
        self.encoder, self.tok, self.max_length, self.bs = encoder.eval(), tokenizer, max_length, batch_size

    def _run(self, enc: dict):
        import torch

        keep = {k: torch.tensor(v) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            return self.encoder(**keep).last_hidden_state, keep["attention_mask"]

    def pooled(self, a: list[str], b: list[str] | None = None) -> np.ndarray:
        out = []
        for i in range(0, len(a), self.bs):
            args = [a[i:i + self.bs]] + ([b[i:i + self.bs]] if b is not None else [])
            enc = self.tok(*args, truncation=True, max_length=self.max_length, padding=True)
            h, mask = self._run(dict(enc))
            mk = mask.unsqueeze(-1).to(h.dtype)
            out.append(((h * mk).sum(1) / mk.sum(1).clamp(min=1)).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0))

    def tokens(self, enc_rows: list[dict], pick: list[list[int]]) -> np.ndarray:
        """Hidden states at the positions ``pick[i]`` of the already tokenized rows."""
        out = []
        for i in range(0, len(enc_rows), self.bs):
            rows = enc_rows[i:i + self.bs]
            w = max(len(r["input_ids"]) for r in rows)
            pad = {"input_ids": self.tok.pad_token_id or 0, "attention_mask": 0, "token_type_ids": 0}
            enc = {k: [list(r[k]) + [pad[k]] * (w - len(r[k])) for r in rows] for k in rows[0] if k in pad}
            h, _ = self._run(enc)
            for j, p in enumerate(pick[i:i + self.bs]):
                if p:
                    out.append(h[j, p].double().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0))


def units(task, ds, emb: Embedder, *, max_rows: int = MAX_ROWS) -> Units:
    """Features and labels of one task's sample (see the module docstring for each kind)."""
    from itt.tasks import Kind

    k = task.kind
    if k in Kind.CLASSIFICATION:
        cols = [list(ds[fld]) for fld in task.fields]
        f = emb.pooled(cols[0], cols[1] if len(cols) > 1 else None)
        y = np.asarray(ds["label"], dtype=np.float64 if task.is_regression else np.int64)
        return Units(f, y, task.is_regression, embedding=f.mean(0))
    if k == Kind.TOKEN:
        words, tags = list(ds["tokens"]), list(ds["label"])
        from itt.kinds.tagging import word_start_marked  # (RoBERTa's words as in running text, as the chain's)

        enc = word_start_marked(emb.tok)(words, is_split_into_words=True, truncation=True, max_length=emb.max_length)
        rows, pick, ys = [], [], []
        for i in range(len(words)):
            first, seen = [], set()
            for pos, w in enumerate(enc.word_ids(i)):
                if w is not None and w not in seen:
                    seen.add(w)
                    first.append(pos)
                    ys.append(tags[i][w])
            rows.append({key: enc[key][i] for key in enc})
            pick.append(first)
        f = emb.tokens(rows, pick)
        y = np.asarray(ys, dtype=np.int64)
        return _cap(Units(f, y, embedding=emb.pooled([" ".join(w) for w in words]).mean(0)), max_rows, task.name)
    if k == Kind.QA:
        q, c = list(ds["question"]), list(ds["context"])
        enc = emb.tok(q, c, truncation="only_second", max_length=emb.max_length, return_offsets_mapping=True)
        rows, pick, ys = [], [], []
        for i in range(len(q)):
            s0 = int(ds[i]["answer_start"][0])
            s1 = s0 + len(ds[i]["answer_text"][0])
            ctx = [pos for pos, s in enumerate(enc.sequence_ids(i)) if s == 1]
            rows.append({key: enc[key][i] for key in enc if key != "offset_mapping"})
            pick.append(ctx)
            ys += [int(enc["offset_mapping"][i][pos][0] < s1 and enc["offset_mapping"][i][pos][1] > s0) for pos in ctx]
        f = emb.tokens(rows, pick)
        return _cap(Units(f, np.asarray(ys, dtype=np.int64), embedding=emb.pooled(q, c).mean(0)), max_rows, task.name)
    if k == Kind.CHOICE:
        q, ch, lab = list(ds["question"]), list(ds["choices"]), list(ds["label"])
        a = [qq for qq, opts in zip(q, ch) for _ in opts]
        b = [o for opts in ch for o in opts]
        y = np.asarray([int(j == g) for opts, g in zip(ch, lab) for j in range(len(opts))], dtype=np.int64)
        f = emb.pooled(a, b)
        return _cap(Units(f, y, embedding=f.mean(0)), max_rows, task.name)
    # retrieval: parallel sentences, no labels
    f = emb.pooled(list(ds["source"]))
    return Units(None, None, why_none="a retrieval task has no labels", embedding=f.mean(0) if len(f) else None)


def _cap(u: Units, max_rows: int, name: str) -> Units:
    """At most ``max_rows`` rows, a seeded choice (tokens of long sentences would dominate the SVD cost)."""
    if u.features is None or len(u.features) <= max_rows:
        return u
    idx = np.sort(np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)).choice(
        len(u.features), max_rows, replace=False))
    return Units(u.features[idx], u.labels[idx], u.regression, u.why_none, u.embedding)


def eval_embedding(task, ds, emb: Embedder) -> np.ndarray:
    """Mean pooled embedding of a target's evaluation text in one language (its model inputs)."""
    from itt.tasks import Kind

    if task.kind in Kind.CLASSIFICATION:
        cols = [list(ds[fld]) for fld in task.fields]
        return emb.pooled(cols[0], cols[1] if len(cols) > 1 else None).mean(0)
    if task.kind == Kind.TOKEN:
        return emb.pooled([" ".join(w) for w in ds["tokens"]]).mean(0)
    if task.kind == Kind.QA:
        return emb.pooled(list(ds["question"]), list(ds["context"])).mean(0)
    if task.kind == Kind.CHOICE:
        return emb.pooled(list(ds["question"]), [" ".join(c) for c in ds["choices"]]).mean(0)
    side = [x for x in ds["source"] if x] or [x for x in ds["target"] if x]
    return emb.pooled(side).mean(0)


# ------------------------------------------------------------------ the prior
@dataclass
class OrderPrior:
    """Per-task scores and consecutive-task links; ``score(order)`` is a pure function of them, so the
    prior pickles with the searcher and scores any order of any space without enumerating it."""

    tasks: list[str]
    unit: dict[str, float]  # u(s): z(transfer to target) and z(similarity), averaged
    link: dict[str, float]  # "a>b": z(transfer a -> b)
    decay: float = DECAY
    link_weight: float = LINK
    measured: dict[str, float] = field(default_factory=dict)  # order key -> measured score (calibrated prior)
    calib: dict | None = None  # {"a", "b", "effects": {task: delta}} (see calibrate)

    def raw(self, order: list[str]) -> float:
        k, out = len(order), 0.0
        for i, t in enumerate(order):
            w = self.decay ** (k - 1 - i)
            out += w * (self.unit.get(t, 0.0) + (self.link_weight * self.link.get(f"{order[i - 1]}>{t}", 0.0) if i else 0.0))
        return out

    def score(self, order: list[str]) -> float:
        key = ">".join(order)
        if key in self.measured:
            return self.measured[key]
        s = self.raw(order)
        if self.calib is None:
            return s
        c = self.calib
        k = len(order)
        return c["a"] + c["b"] * s + sum(self.decay ** (k - 1 - i) * c["effects"].get(t, 0.0) for i, t in enumerate(order))


@dataclass
class PriorEnsemble:
    """The prior from several earlier searches (``search.prior_from: [A, B, ...]``): a weighted sum of
    their calibrated priors (``calibrate``), each standardised over the space (mean 0, sd 1 on
    ``OrderSpace.sample``), rescaled to sd 1 again; the sampler sees it as it sees one prior.

    Which earlier target resembles this one is not known before this search has scores, so the weights
    start equal and follow this target's completed orders (``observe``), as the ranking-weighted
    ensemble of Feurer, Letham, Hutter & Bakshy ("Scalable meta-learning for Bayesian optimization using
    ranking-weighted Gaussian process ensembles", AutoML 2018, RGPE) weighs its base models: the weight of
    an earlier search is the probability that it ranks this target's scores best, i.e. has the fewest
    discordant pairs, estimated over bootstrap resamples of the observations (ties share the vote).
    RGPE samples its base GPs' posteriors; an earlier search's prior is a point estimate here, so the
    uncertainty comes from resampling this target's orders. An earlier search that ranks them no better
    than chance (fewer than 10% of the resamples with under half the pairs discordant; RGPE drops a base
    model that ranks worse than the target's own model) gets weight 0 - it comes back if later orders
    say otherwise; when all are dropped, the prior is flat and the GP goes on without it.
    The start-up orders (before the GP is fitted) are each earlier search's best in turn (``start_score``)."""

    parts: list[OrderPrior]
    sources: list[str]
    center: list[float]
    spread: list[float]
    corr: list[list[float]]  # of the standardised parts over the sample (the weighted sum's spread)
    weights: list[float] = field(default_factory=list)
    observed: int = 0  # completed orders the weights were computed from

    BOOTSTRAP = 200
    USEFUL = 0.1  # an earlier search is dropped when it ranks better than chance in fewer resamples than this

    @classmethod
    def over(cls, parts: list[OrderPrior], sources: list[str], space) -> "PriorEnsemble":
        cols = np.array([[p.score(o) for p in parts] for o in space.sample()], dtype=float)
        sd = np.where(cols.std(0) > 1e-12, cols.std(0), 1.0)
        z = (cols - cols.mean(0)) / sd
        return cls(parts=parts, sources=sources, center=cols.mean(0).tolist(), spread=sd.tolist(),
                   corr=(z.T @ z / len(z)).tolist(), weights=[1.0 / len(parts)] * len(parts))

    def columns(self, order: list[str]) -> np.ndarray:
        return np.array([(p.score(order) - c) / s for p, c, s in zip(self.parts, self.center, self.spread)])

    def score(self, order: list[str]) -> float:
        w = np.asarray(self.weights)
        sd = math.sqrt(max(float(w @ np.asarray(self.corr) @ w), 0.0))
        return float(w @ self.columns(order)) / sd if sd > 1e-12 else 0.0

    raw = score  # (best_orders' beam over the prefixes of large spaces)

    def start_score(self, order: list[str], k: int) -> float:
        """What picks the ``k``-th start-up order (0-based, before the GP is fitted): while nothing says
        which earlier search resembles this target, the earlier searches take turns, each proposing its own
        best order not yet run (a portfolio: one related search is enough); then the weighted score."""
        return float(self.columns(order)[k % len(self.parts)]) if not self.observed else self.score(order)

    def observe(self, finals: list[tuple[list[str], float]], seed: int = 0) -> bool:
        """Reweigh from this target's completed (order, score) pairs; True when the weights changed."""
        if len(finals) < 3 or len(finals) == self.observed:
            return False
        cols = np.array([self.columns(o) for o, _ in finals])
        y = np.array([v for _, v in finals], dtype=float)
        rng = np.random.default_rng([seed, len(finals)])
        counts = np.array([np.bincount(rng.integers(len(y), size=len(y)), minlength=len(y)) for _ in range(self.BOOTSTRAP)])
        losses = _discordant(cols, y, counts)  # one row per resample
        votes = np.zeros(len(self.parts))
        for loss in losses[np.all(np.isfinite(losses), axis=1)]:
            best = loss == loss.min()
            votes[best] += 1.0 / best.sum()
        useful = np.mean(losses < 0.5, axis=0) >= self.USEFUL
        w = np.where(useful, votes, 0.0)
        old = list(self.weights)
        self.weights = (w / w.sum()).tolist() if w.sum() > 0 else [0.0] * len(self.parts)
        self.observed = len(finals)
        return self.weights != old


def _discordant(cols: np.ndarray, y: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """Per column: the share of pairs with different scores that the column orders the other way (RGPE's
    ranking loss, as a share; a tie in the column counts half); NaN without such a pair. ``counts``
    (resamples x observations: how often each is drawn) gives one row per bootstrap resample, its pairs
    being the pairs of its draws (two draws of one observation have the same score: never a pair), as
    ``counts^T M counts`` over the pair matrices - no resample is materialised."""
    dy = np.sign(y[:, None] - y[None, :])
    pairs = (dy != 0).astype(float)
    C = np.ones((1, len(y))) if counts is None else np.asarray(counts, dtype=float)
    n = ((C @ pairs) * C).sum(1)
    out = np.empty((len(C), cols.shape[1]))
    for j, c in enumerate(cols.T):
        dc = np.sign(c[:, None] - c[None, :])
        wrong = ((dc == -dy) + 0.5 * (dc == 0)) * pairs  # a tie is half wrong
        out[:, j] = ((C @ wrong) * C).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n[:, None] > 0, out / n[:, None], np.nan)
    return out if counts is not None else out[0]


def calibrate(prior: OrderPrior, measured: dict[str, float], ridge: float = 1.0) -> OrderPrior:
    """The prior on the metric's scale from a finished search's scores (orders -> mean score): least
    squares of score on (1, raw prior score) plus ridge-shrunk per-task effects (position-weighted
    membership); measured orders keep their measured value."""
    fit = {o: v for o, v in measured.items() if o}  # F (no task, raw 0) is no "average" IF order: kept, not fitted
    orders = [order_tasks(o) for o in fit]
    y = np.array(list(fit.values()), dtype=float)
    T = prior.tasks
    X = np.zeros((len(orders), 2 + len(T)))
    for r, o in enumerate(orders):
        X[r, 0], X[r, 1] = 1.0, prior.raw(o)
        for i, t in enumerate(o):
            if t in T:
                X[r, 2 + T.index(t)] += prior.decay ** (len(o) - 1 - i)
    pen = np.diag([0.0, 1e-6] + [ridge * max(float(np.var(y)), 1e-12)] * len(T))
    beta = np.linalg.solve(X.T @ X + pen, X.T @ y) if len(y) >= 2 else np.array([y.mean() if len(y) else 0.0, 1e-9] + [0.0] * len(T))  # (one order: the prior's ranking kept)
    return OrderPrior(tasks=T, unit=prior.unit, link=prior.link, decay=prior.decay, link_weight=prior.link_weight,
                      measured=dict(measured), calib={"a": float(beta[0]), "b": float(beta[1]),
                                                      "effects": {t: float(beta[2 + i]) for i, t in enumerate(T)}})


def agreement(prior: OrderPrior, measured: dict[str, float]) -> dict:
    """How well the prior, before any calibration, ranks the IF orders a search measured (order key ->
    mean score; F is left out: the prior scores it 0 by construction, not by a measurement): Spearman's
    rho with scipy's two-sided p-value, Kendall's tau-b, where the prior's favourite among them ranks by
    measured score, and where the measured best ranks by the prior (1 = first; a tie shares the better
    rank). A search's completed orders are the ones its searcher and ASHA chose, not a random sample of
    the space: this is the prior's ranking of those orders."""
    from scipy import stats

    keys = [k for k in measured if k]
    out: dict = {"n": len(keys)}
    if len(keys) < 3:
        return {**out, "underpowered": f"{len(keys)} IF order(s) measured (need 3)"}
    p = np.array([prior.raw(order_tasks(k)) for k in keys])
    y = np.array([measured[k] for k in keys], dtype=float)
    if np.ptp(p) <= 1e-12 or np.ptp(y) <= 1e-12:
        return {**out, "underpowered": "the prior scores every measured order alike" if np.ptp(p) <= 1e-12
                else "every measured order scored alike"}
    rho, tau = stats.spearmanr(p, y), stats.kendalltau(p, y)
    fav, best = int(np.argmax(p)), int(np.argmax(y))
    return {**out, "spearman": float(rho.statistic), "p": float(rho.pvalue), "kendall": float(tau.statistic),
            "prior_best": keys[fav], "prior_best_rank": int((y > y[fav]).sum()) + 1,
            "measured_best": keys[best], "measured_best_prior_rank": int((p > p[best]).sum()) + 1}


def agreement_text(a: dict, where: str) -> str:
    """One sentence on ``agreement``'s answer for the orders measured ``where``."""
    if "underpowered" in a:
        return f"The prior against {where}: not measured ({a['underpowered']})."
    return (f"The prior against the {a['n']} IF orders {where}: Spearman rho = {a['spearman']:+.2f} "
            f"(p = {a['p']:.2g}), Kendall tau = {a['kendall']:+.2f}; its favourite among them, "
            f"{a['prior_best']}, ranks {a['prior_best_rank']} of {a['n']} there, and the best measured, "
            f"{a['measured_best']}, ranks {a['measured_best_prior_rank']} of {a['n']} by the prior.")


def _z(values: dict[str, float | None]) -> dict[str, float]:
    ok = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    if not ok:
        return {k: 0.0 for k in values}
    mu, sd = float(np.mean(list(ok.values()))), float(np.std(list(ok.values())))
    flat = sd <= 1e-9 * (1.0 + abs(mu))  # equal up to rounding: no ranking to read from it
    return {k: ((ok[k] - mu) / sd if not flat else 0.0) if k in ok else 0.0 for k in values}


def _z_by_destination(links: dict[str, float]) -> dict[str, float]:
    """Links z-scored among the sources into each task (LogME's scale depends on the destination's labels)."""
    out: dict[str, float] = {}
    for b in {k.split(">")[1] for k in links}:
        out.update(_z({k: v for k, v in links.items() if k.split(">")[1] == b}))
    return out


def measure(scfg, chain, *, sample: int = SAMPLE, eval_sample: int = EVAL_SAMPLE, log=lambda *a: None) -> dict:
    """Every measurement of the prior on the config's initial encoder (seed = the chain's first seed)."""
    import torch
    from accelerate.utils import set_seed

    from itt.chain import prepare
    from itt.data import load_split
    from itt.models import build_encoder
    t0 = time.perf_counter()
    from search.heuristics import chain_for_candidates

    cfg = chain_for_candidates(chain, list(scfg.candidates))
    p = prepare(cfg, log=lambda *a: None)
    seed = cfg.seeds[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches on shared cores: more threads only wait on each other
    try:
        set_seed(seed)  # the encoder every chain of this config starts from
        max_len = max([cfg.stage_hparams(t.name).max_length for t in p.order] + [cfg.stage_hparams(None).max_length])
        encoder = build_encoder(cfg.model, p.tokenizer, max_length=max_len, sdpa=cfg.hardware.sdpa)
        emb = Embedder(encoder, p.tokenizer, max_length=max_len)
        kw = {"data_root": cfg.data_root, "toy_options": cfg.toy, "seed": cfg.data_seed}

        def cap(name):
            c = cfg.stage_hparams(name).max_examples
            return min(sample, c) if c else sample

        u: dict[str, Units] = {}
        for task in p.order:
            ds = load_split(task, "train", task.languages[0], max_examples=cap(task.name), **kw)
            u[task.name] = units(task, ds, emb)
        target = p.target
        if target.trains:
            ds = load_split(target, "train", target.languages[0], max_examples=cap(None), **kw)
            tu = units(target, ds, emb)
        else:
            tu = Units(None, None, why_none=f"the target '{target.name}' is a retrieval task (no labels)")
        split = "dev"  # the split the search's objective is on (search/trial.py), never the test inputs
        langs = {}
        for lang in (g for g in p.languages if target.source(split, g) is not None):  # (a language with no dev: none)
            ds = load_split(target, split, lang, max_examples=min(eval_sample, cfg.eval.max_examples or eval_sample), **kw)
            langs[lang] = eval_embedding(target, ds, emb)
        if not langs:
            raise UserError(f"the transferability prior compares tasks with the target's dev inputs, and target "
                            f"'{target.name}' has no dev split in {', '.join(p.languages)}")
        fits = {name: logme_fit(x.features, x.labels, regression=x.regression) for name, x in u.items()
                if x.features is not None and len(np.unique(x.labels)) > 1}
        to_target = {}
        for name, x in u.items():
            ok = name in fits and tu.features is not None
            to_target[name] = forward_transfer(fits[name][1], tu.features, tu.labels, regression=tu.regression) if ok else None
        links = {}
        for a in u:
            for b, xb in u.items():
                if a != b and a in fits and xb.features is not None and b in fits:
                    links[f"{a}>{b}"] = forward_transfer(fits[a][1], xb.features, xb.labels, regression=xb.regression)
        sim = {}
        for name, x in u.items():
            e = x.embedding
            sim[name] = float(np.mean([e @ v / (np.linalg.norm(e) * np.linalg.norm(v) + 1e-300) for v in langs.values()]))
        target_logme = (logme(tu.features, tu.labels, regression=tu.regression)
                        if tu.features is not None and len(np.unique(tu.labels)) > 1 else None)
    finally:
        torch.set_num_threads(threads)
    zl, zt, zs = _z({t: fits[t][0] if t in fits else None for t in u}), _z(to_target), _z(sim)
    unit = {t: (zl[t] + zt[t] + zs[t]) / 3 for t in u}
    tasks = {t: {"logme": fits[t][0] if t in fits else None, "transfer": to_target[t], "similarity": sim[t],
                 "score": unit[t], "units": len(u[t].features) if u[t].features is not None else 0,
                 **({"note": u[t].why_none} if u[t].why_none else {})} for t in u}
    return {"tasks": tasks, "links": links, "link_z": _z_by_destination(links), "target": {"task": target.name, "logme": target_logme,
            "languages": list(p.languages), "split": split, **({"note": tu.why_none} if tu.why_none else {})},
            "seed": seed, "sample": sample, "eval_sample": eval_sample, "decay": DECAY, "link_weight": LINK,
            "seconds": round(time.perf_counter() - t0, 2)}


def prior_of_measurements(m: dict) -> OrderPrior:
    return OrderPrior(tasks=list(m["tasks"]), unit={t: v["score"] for t, v in m["tasks"].items()},
                      link=dict(m["link_z"]), decay=m["decay"], link_weight=m["link_weight"])


_MEMO: dict[str, dict] = {}  # in one process (a benchmark runs many searches): config -> measurements


def _memo_key(scfg, chain, sample: int) -> str:
    blob = json.dumps([chain.model_dump(mode="json"), list(scfg.candidates), sample], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def transferability(scfg, chain, *, sample: int = SAMPLE, log=lambda *a: None) -> dict:
    """The measurements (``measure``), computed once per process for one config and sample size."""
    key = _memo_key(scfg, chain, sample)
    if key not in _MEMO:
        _MEMO[key] = measure(scfg, chain, sample=sample, log=log)
    return _MEMO[key]


def measured_scores(exp_dir: str, label: str = "--from") -> tuple[dict[str, float], str]:
    """Mean score per order of a finished search's completed trials (results.csv)."""
    from search.tracking import read_rows, storage_of

    st = storage_of(exp_dir, label)
    if not st.exists("results.csv"):
        raise UserError(f"{label} {exp_dir}: no results.csv here (not an `itt search` experiment directory)")
    by: dict[str, list[float]] = {}
    for r in read_rows(st):
        if r.get("status") != "completed" or r.get("score") in ("", None):
            continue
        try:
            score = float(r["score"])
        except ValueError:  # (a cell edited by hand)
            raise UserError(f"{label} {exp_dir}: results.csv: trial {r.get('trial_id') or '?'} ({r.get('order') or 'F'}) "
                            f"has score {r['score']!r}, not a number: edited? restore it") from None
        if math.isfinite(score):
            by.setdefault(r.get("order") or "", []).append(score)
    if not by:
        raise UserError(f"{label} {exp_dir}: no completed trial with a score in results.csv")
    return {o: float(np.mean(v)) for o, v in by.items()}, st.display


def measured_sources(exp_dirs: list[str], space, label: str = "search.prior_from") -> list[tuple[dict[str, float], str]]:
    """``measured_in_space`` of each earlier search (an error names the one that fails, or one listed twice)."""
    seen = set()
    for d in exp_dirs:
        if d in seen:
            raise UserError(f"{label}: {d} is listed twice")
        seen.add(d)
    return [measured_in_space(d, space, label) for d in exp_dirs]


def measured_in_space(exp_dir: str, space, label: str = "--from") -> tuple[dict[str, float], str]:
    """``measured_scores`` of the orders that are also in ``space`` (an error when none is)."""
    measured, src = measured_scores(exp_dir, label)
    measured = {o: v for o, v in measured.items() if space.is_valid(order_tasks(o))}
    if not measured:
        raise UserError(f"{label} {exp_dir}: none of its completed orders is in this config's search space")
    return measured, src


def rank(scfg, chain, *, from_exp: list[str] | str | None = None, sample: int = SAMPLE, top: int = 10,
         log=lambda *a: None) -> dict:
    """Everything ``itt rank`` prints: per-task measurements, the best orders of the space, the cost.
    ``from_exp``: finished searches to calibrate on - one (scores on the metric's scale), or several
    (a ``PriorEnsemble`` at equal weights, z units; with ``first_orders``, the start-up orders a search
    with them as ``search.prior_from`` would run)."""
    t0 = time.perf_counter()
    space = scfg.space()
    froms = [from_exp] if isinstance(from_exp, str) else list(from_exp or [])
    measured = measured_sources(froms, space, "--from") if froms else []  # checked before seconds of measuring
    m = transferability(scfg, chain, sample=sample, log=log)
    base = prior_of_measurements(m)
    prior, parts = calibrated(base, measured, space)
    seen = {o for scores, _ in measured for o in scores}
    orders = best_orders(prior, space, top)
    res = {"measurements": m, "prior": prior, "from": [src for _, src in measured] if len(measured) > 1 else
           (measured[0][1] if measured else None), "measured": sum(len(sc) for sc, _ in measured),
           "orders": [{"order": ">".join(o), "score": prior.score(o), "raw": prior.raw(o), "measured": ">".join(o) in seen}
                      for o in orders], "count": space.count(), "seconds": round(time.perf_counter() - t0, 2)}
    res["agreement"] = [{"from": src, **agreement(base, scores)} for scores, src in measured]
    if len(parts) > 1:
        res["sources"] = source_records(measured, parts)
        res["first_orders"] = [">".join(o) for o in start_orders(prior, space)]
    return res


def calibrated(base: OrderPrior, measured: list[tuple[dict[str, float], str]], space):
    """(the prior, its calibrated parts): ``base`` calibrated on each earlier search's measured scores
    (``measured_sources``) - ``base`` itself for none, the calibrated ``OrderPrior`` for one, a
    ``PriorEnsemble`` of them for several."""
    parts = [calibrate(base, scores) for scores, _ in measured]
    if len(parts) < 2:
        return (parts[0] if parts else base), parts
    return PriorEnsemble.over(parts, [src for _, src in measured], space), parts


def source_records(measured: list[tuple[dict[str, float], str]], parts: list[OrderPrior]) -> list[dict]:
    """Per earlier search: where it is, how many orders it measured, its calibration (prior.json, --json)."""
    return [{"from": src, "measured": len(scores), "calibration": p.calib} for (scores, src), p in zip(measured, parts)]


def start_orders(prior: PriorEnsemble, space) -> list[list[str]]:
    """The start-up orders of an order_bo search with several earlier searches as its prior: each one's
    best order not already taken, in turn (PriorEnsemble.start_score, before any score of its own)."""
    out: list[list[str]] = []
    for part in prior.parts:
        out.append(next(o for o in best_orders(part, space, len(prior.parts) + 1) if o not in out))
    return out


def best_orders(prior: OrderPrior, space, top: int, per_length: bool = False) -> list[list[str]]:
    """The ``top`` orders of ``space`` by prior score (ties: space order). ``per_length``: the best of each
    nonzero length instead. Large spaces are searched greedily (a beam over prefixes), not enumerated."""
    from search.space import MAX_ENUMERATE

    n = len(space.candidates)
    if sum(math.perm(n, k) for k in space.lengths) <= min(MAX_ENUMERATE, 200_000):
        scored = [(prior.score(o), i, o) for i, o in enumerate(space.orders())]
    else:  # a beam of width 200 per length over prefixes (constraints checked by the space)
        scored, i = [], 0
        for k in space.lengths:
            beam = [[]]
            for depth in range(k):
                nxt = [b + [t] for b in beam for t in space.feasible(b, k)]
                nxt.sort(key=lambda o: -prior.score(o))  # (calibrated: a + b raw + effects; b may be < 0)
                beam = nxt[:200]
            for o in beam:
                if space.is_valid(o):
                    scored.append((prior.score(o), i, o))
                    i += 1
    scored.sort(key=lambda x: (-x[0], x[1]))
    if per_length:
        out, seen = [], set()
        for _, _, o in scored:
            if o and len(o) not in seen:
                seen.add(len(o))
                out.append(o)
        return sorted(out, key=len)
    return [o for _, _, o in scored[:top]]


def to_json(res: dict) -> dict:
    """What ``itt rank --json`` writes and a search keeps as ``<experiment>/prior.json``."""
    p = res["prior"]
    return {"measurements": res["measurements"], "orders": res["orders"], "from": res["from"], "measured": res["measured"],
            "calibration": getattr(p, "calib", None), "count": res["count"], "seconds": res["seconds"],
            **{k: res[k] for k in ("sources", "first_orders") if k in res},
            **({"agreement": res["agreement"]} if res.get("agreement") else {})}


PRIOR_FILE = "prior.json"


def order_prior(scfg, chain, *, st=None, log=lambda *a: None, measured: list | None = None):
    """The search's prior, built once in the driver (memoised measurements per process):
    ``prior: transferability`` measures the encoder; ``prior_from`` calibrates it on each earlier search's
    measured scores (``calibrate``; without the measurements, on per-task effects alone) - an
    ``OrderPrior`` for one earlier search, a ``PriorEnsemble`` for several. With ``st`` (the experiment's
    storage) it is written to ``<experiment>/prior.json`` with its best orders. ``measured``:
    ``measured_sources``' answer for ``prior_from`` where the caller has read it already."""
    space = scfg.space()
    if measured is None:
        measured = measured_sources(scfg.prior_from, space) if scfg.prior_from else []
    m = transferability(scfg, chain) if scfg.prior == "transferability" else None
    base = prior_of_measurements(m) if m else OrderPrior(tasks=list(scfg.candidates), unit={}, link={})
    prior, parts = calibrated(base, measured, space)
    sources = [src for _, src in measured]
    if st is not None:
        best = best_orders(prior, space, 10)
        froms = source_records(measured, parts)
        st.write_text(json.dumps({"measurements": m, "from": sources[0] if len(sources) == 1 else sources,
                                  "measured": sum(f["measured"] for f in froms),
                                  "calibration": parts[0].calib if len(parts) == 1 else None,
                                  **({"sources": froms} if len(froms) > 1 else {}),
                                  "orders": [{"order": ">".join(o), "score": prior.score(o)} for o in best]}, indent=1), PRIOR_FILE)
        parts_said = ([f"transferability {m['seconds']:.1f} s on the initial encoder"] if m else []) + \
                     [f"{len(scores)} orders measured by {src}" for scores, src in measured]
        first = ("first orders (each earlier search's best, in turn): " + ", ".join(">".join(o) for o in start_orders(prior, space))
                 if len(parts) > 1 else f"best order {'>'.join(best[0]) if best else '-'}")
        log(f"order prior: {'; '.join(parts_said)}; {first} ({PRIOR_FILE} in the experiment)")
    return prior
