"""order_bo's surrogate: Gaussian processes over order features, and their average.

``Surrogate`` is one GP (BoTorch's ``MultiTaskGP``: finals are task 0, probes task 1, an inter-fidelity
correlation learned from the data) over one ``features.OrderFeatures``: an additive kernel of one RBF
per feature group. It keeps its fitted hyperparameters between proposals and re-optimises them only
when the data has grown by a quarter.

``Averaged`` weighs the posteriors of several surrogates by their evidence (Bayesian model averaging;
Hoeting et al., "Bayesian model averaging: a tutorial", Statistical Science 1999): each surrogate's
BIC-style log evidence (``bic``: its fit's objective, the log marginal likelihood plus the
hyperparameters' log prior, minus half their number times log n; Schwarz 1978) is taken at each
hyperparameter fit, on the same data for all, and the candidates' mean and variance are the mixture's. order_bo averages the default features (task
at its depth from the *end*) with the same plus the task at its position from the *start*
(``search.order_bo.from_start``): whether a task's effect follows it to the end of the chain
(forgetting) or stays where it was trained (a curriculum) is a property of the tasks and the target
that the data decides, and a probe of a prefix only shares start positions with the orders it begins.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from search.searchers.features import OrderFeatures
from search.searchers.posterior import FinalPosterior

FINAL, PROBE = 0, 1  # the GP's tasks (fidelities)
# exact Cholesky solves up to this many training points (GPyTorch's default switches to conjugate gradients
# and Lanczos above 800, slower here and approximate: a search of 300 trials has ~1200 finals and probes)
CHOLESKY_UP_TO = 5000
FIT_POINTS = 600  # observations the hyperparameters are optimised on (the posterior uses all of them)
NEGLIGIBLE = 1e-4  # a surrogate weighed less than this is left out of the average (its posterior is not computed)


class Surrogate:
    """One GP over ``features``; ``enumerate_orders``: the space's orders when every candidate is one of
    them (their features are computed once), else None."""

    def __init__(self, features: OrderFeatures, *, seed: int, fit_iters: int = 40, use_probes: bool = True,
                 enumerate_orders=None):
        self.features, self.seed, self.fit_iters, self.use_probes = features, seed, fit_iters, use_probes
        self.enumerate_orders = enumerate_orders
        self.warm: dict | None = None  # the last fit's hyperparameters (a warm start for the next)
        self.fitted_at = 0  # training points at the last hyperparameter optimisation
        self.evidence: float | None = None  # BIC-style log evidence at the last optimisation (None: failed)
        self._cands: tuple | None = None  # enumerated candidate orders and their features (not pickled)

    def __getstate__(self):
        return {**self.__dict__, "_cands": None}  # rebuilt on demand: large and derived

    # ------------------------------------------------------------------ fitting
    def due(self, obs) -> bool:
        """Whether the hyperparameters are to be re-optimised: never yet, or the data (finals and, where
        used, probes) has grown by a quarter since the last optimisation."""
        n = len(obs.finals) + (len(obs.probes) if self.use_probes else 0)
        return self.warm is None or n >= 1.25 * self.fitted_at

    def fit(self, obs, refit: bool | None = None):
        """The GP on everything observed (``order_bo.Observations``), or None where a fit fails (degenerate
        data). Its hyperparameters are re-optimised (warm-started) only when ``refit`` (default: when
        ``due``), on at most ``FIT_POINTS`` of the observations (a seeded sample of finals and probes: the
        marginal likelihood costs a Cholesky per step, cubic in the points); in between, the last ones
        are kept and only the posterior is recomputed on all the data (one Cholesky): a proposal stays
        under a second. Surrogates averaged together refit together, so their evidence is on the same data."""
        import torch

        refit = self.due(obs) if refit is None else refit
        X, Y = self._training_data(obs)
        # BoTorch draws the task kernel's initial factors (and a failed fit's restarts) from torch's global
        # generator: seeded here from the searcher's seed and the data, so the same search proposes the same
        # orders whatever ran before it in the process (a benchmark runs many searches in one driver)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed * 1_000_003 + len(Y))
            return self._fit_seeded(X, Y, refit or self.warm is None)

    def _fit_seeded(self, X, Y, refit: bool):
        if refit:
            Xs, Ys = _fit_subset(X, Y)
            fitted = self._optimise(self._warm_started(Xs, Ys), Xs, Ys)
            self.evidence = None if fitted is None else bic(fitted)
            if fitted is None:
                return None
            self.fitted_at = len(Y)
            self.warm = {k: v.detach().clone() for k, v in fitted.state_dict().items()
                         if "raw_" in k or k.endswith("constant") or "covar_factor" in k}
        model = self._warm_started(X, Y)
        model.eval()
        return model

    def _warm_started(self, X, Y):
        model = self._model(X, Y)
        if self.warm is not None:
            try:
                model.load_state_dict(self.warm, strict=False)
            except Exception:
                self.warm = None
        return model

    def _optimise(self, model, X, Y):
        """Type-II maximum likelihood (BoTorch's fit_gpytorch_mll, L-BFGS-B); once more from the priors
        when a warm start fails; None when that fails too."""
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        for attempt in range(2):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model),
                                     optimizer_kwargs={"options": {"maxiter": self.fit_iters}})
                return model
            except Exception:
                model = self._model(X, Y)
        return None

    def _training_data(self, obs):
        import torch

        rows = [(o, h, y, FINAL) for o, h, y in obs.finals]
        if self.use_probes:
            rows += [(o, h, y, PROBE) for o, h, y in obs.probes]
        F = self.features.matrix([(o, h) for o, h, _, _ in rows])
        task = np.array([[r[3]] for r in rows], dtype=float)
        X = torch.tensor(np.hstack([F, task]), dtype=torch.float64)
        Y = torch.tensor([[r[2]] for r in rows], dtype=torch.float64)
        return X, Y

    def _model(self, X, Y):
        from botorch.models import MultiTaskGP, SingleTaskGP

        tasks = set(X[:, -1].tolist())
        if len(tasks) > 1:
            return MultiTaskGP(X, Y, task_feature=-1, covar_module=self._kernel(), output_tasks=[FINAL])
        return SingleTaskGP(X[:, :-1], Y, covar_module=self._kernel())

    def _kernel(self):
        import torch
        from gpytorch.kernels import AdditiveKernel, RBFKernel, ScaleKernel
        from gpytorch.priors import LogNormalPrior

        parts = []
        for name, dims in self.features.groups.items():
            d = len(dims)
            # BoTorch's dimension-scaled lengthscale prior (Hvarfner et al., 2024), one lengthscale per
            # group, except per dimension (ARD) for the hyperparameters and for membership: one task can
            # matter wherever it sits (a task the target needs), and with that prior ARD is safe on few data
            prior = LogNormalPrior(loc=math.sqrt(2) + 0.5 * math.log(d), scale=math.sqrt(3))
            rbf = RBFKernel(ard_num_dims=d if name in ("hparams", "which") else None, active_dims=torch.tensor(dims),
                            lengthscale_prior=prior)
            parts.append(ScaleKernel(rbf))
        return AdditiveKernel(*parts)

    # ------------------------------------------------------------------ predicting
    def posterior(self, model, pending: list) -> FinalPosterior:
        """The fitted ``model``'s posterior at the final fidelity, with ``pending`` configurations as believers."""
        return FinalPosterior(model, self.features.matrix(pending) if pending else None)

    def features_of(self, configs) -> np.ndarray:
        """Features of candidate configurations; the enumerated orders' are computed once."""
        if self.enumerate_orders is None:
            return self.features.matrix(configs)
        weights = tuple(getattr(self.features.prior, "weights", ()))  # a PriorEnsemble's feature moves with its weights
        if self._cands is None or self._cands[2] != weights:
            orders = [list(o) for o in self.enumerate_orders()]
            self._cands = ({tuple(o): i for i, o in enumerate(orders)}, self.features.matrix([(o, {}) for o in orders]), weights)
        index, F, _ = self._cands
        return F[[index[tuple(o)] for o, _ in configs]]


def _fit_subset(X, Y):
    if len(Y) <= FIT_POINTS:
        return X, Y
    finals = np.flatnonzero(X[:, -1].numpy() == FINAL)
    probes = np.flatnonzero(X[:, -1].numpy() != FINAL)
    rng = np.random.default_rng(len(Y))
    n_probes = max(min(len(probes), FIT_POINTS // 3), FIT_POINTS - len(finals))  # both tasks stay in
    keep = np.concatenate([rng.permutation(finals)[:FIT_POINTS - n_probes], rng.permutation(probes)[:n_probes]])
    return X[np.sort(keep)], Y[np.sort(keep)]


def bic(model) -> float:
    """BIC-style log evidence of a fitted GP on its training data: the objective its hyperparameters were
    fitted to (the exact log marginal likelihood plus their priors' log density) at the fit, minus half
    their number times log n (Schwarz 1978; the Laplace approximation with the Hessian's log
    determinant taken as k log n)."""
    import torch
    from gpytorch.mlls import ExactMarginalLogLikelihood

    X, Y = model.train_inputs[0], model.train_targets
    model.train()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # (GPyTorch's mll is divided by n; a multi-task likelihood takes the inputs for their task column)
            value = ExactMarginalLogLikelihood(model.likelihood, model)(model(X), Y, X).item() * len(Y)
    finally:
        model.eval()
    k = sum(p.numel() for name, p in model.named_parameters() if "raw_" in name or "covar_factor" in name)
    return value - 0.5 * k * math.log(len(Y))


def weights(evidence: list[float | None]) -> np.ndarray:
    """Posterior model probabilities from log evidences (equal priors): exp(e_i - max) normalised; a
    missing or non-finite evidence weighs 0 unless no surrogate has one (then the first weighs 1)."""
    ev = np.array([e if e is not None and math.isfinite(e) else -np.inf for e in evidence], dtype=float)
    if not np.isfinite(ev).any():
        return np.eye(len(ev))[0]
    w = np.exp(ev - ev.max())
    return w / w.sum()


class Averaged:
    """The posterior of several fitted surrogates, each weighed by its evidence: ``parts`` are
    (weight, surrogate, FinalPosterior), weights summing to 1. Means and variances are the mixture's
    (its first two moments); ``rivals`` samples the mixture jointly."""

    def __init__(self, parts: list[tuple[float, Surrogate, FinalPosterior]]):
        self.parts = parts

    @classmethod
    def of(cls, fitted: list[tuple[Surrogate, object]], pending: list) -> Averaged | None:
        """The average of the surrogates whose fit succeeded (``fitted``: (surrogate, model or None)),
        weighed by their evidence at the last fit (``weights``), those below ``NEGLIGIBLE`` left out;
        None when none is fitted. (A surrogate restored from before averaging has no evidence yet: alone,
        it weighs 1.)"""
        ok = [(s, m) for s, m in fitted if m is not None]
        if not ok:
            return None
        w = weights([s.evidence for s, _ in ok])
        keep = [i for i in range(len(ok)) if w[i] >= NEGLIGIBLE]
        total = float(w[keep].sum())
        return cls([(float(w[i]) / total, ok[i][0], ok[i][0].posterior(ok[i][1], pending)) for i in keep])

    def __call__(self, configs) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each configuration's final score."""
        if len(self.parts) == 1:
            _, s, post = self.parts[0]
            return post(s.features_of(configs))
        mean, second = 0.0, 0.0
        for w, s, post in self.parts:
            mu, sd = post(s.features_of(configs))
            mean, second = mean + w * mu, second + w * (sd ** 2 + mu ** 2)
        return mean, np.sqrt(np.maximum(second - mean ** 2, 1e-24))

    def rivals(self, first, configs, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``first`` against its rivals ``configs``, from one joint posterior per surrogate: ``n`` joint
        draws of their final scores (rows; column 0 is ``first``'s), each row from one surrogate chosen by
        its weight, and each rival's P(scoring above ``first``), each pair exactly (Gaussian per surrogate,
        mixed by weight)."""
        from scipy.stats import norm

        counts = rng.multinomial(n, [w for w, _, _ in self.parts]) if len(self.parts) > 1 else [n]
        draws, above = [], 0.0
        for (w, s, post), k in zip(self.parts, counts):
            m, C = post.joint(s.features_of([first] + list(configs)))
            e, V = np.linalg.eigh((C + C.T) / 2)  # (a square root that survives a semi-definite covariance)
            draws.append(m + rng.standard_normal((k, len(m))) @ (V * np.sqrt(np.clip(e, 0.0, None))).T)
            var = np.clip(np.diag(C)[1:] + C[0, 0] - 2 * C[0, 1:], 1e-24, None)
            above = above + w * norm.cdf((m[1:] - m[0]) / np.sqrt(var))
        return np.concatenate(draws), above
