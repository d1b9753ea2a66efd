"""The surrogate's posterior at the final fidelity for thousands of candidate orders at once.

BoTorch's ``model.posterior`` builds, per batch of candidates, their joint covariance and solves against
the training data through GPyTorch's lazy operators: ~3 s for 10^4 candidates against 1200 training
points on one core. A proposal needs only each candidate's mean and variance, so ``FinalPosterior``
computes exactly those, with the fitted model's own modules (its kernel, mean, likelihood noise and
outcome transform) and torch's Cholesky - the same numbers as ``model.posterior`` (tests/test_search.py
checks them to 1e-9), several times faster:

* one Cholesky of the training covariance (with noise) per proposal; the candidates' part is two
  matrix products, in chunks;
* training points that share an input (a prefix probed by several trials; an order's final and its
  last probe, which differ only in the task index) share one kernel column: the data kernel is
  evaluated against the distinct inputs only and the training weights are summed onto them
  (for a multi-task model, weighted by the task covariance between the final and each point's task);
* pending trials enter as believers (kriging believer, Ginsbourger et al. 2010): observed at their
  posterior mean with the final fidelity's noise, as ``condition_on_observations`` would add them.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK = 2048  # candidates per matrix product (a 2048 x distinct-inputs block)
FINAL = 0  # the multi-task model's final-fidelity task


class FinalPosterior:
    def __init__(self, model, pending: np.ndarray | None = None):
        """``model``: a fitted BoTorch ``MultiTaskGP`` (task feature last, finals = task 0) or
        ``SingleTaskGP`` in eval mode; ``pending``: features (without the task column) of configurations
        still being trained, added as believers."""
        self.model = model
        self.multitask = hasattr(model, "_task_feature")
        X, y = model.train_inputs[0], model.train_targets
        with torch.no_grad():
            self._solve(X, y)
            if pending is not None and len(pending):
                Xp = self._with_task(torch.as_tensor(pending, dtype=X.dtype))
                self._solve(torch.cat([X, Xp]), torch.cat([y, self._standard_mean(Xp[:, :self.d])]))

    # ------------------------------------------------------------------ the training side
    def _solve(self, X: torch.Tensor, y: torch.Tensor) -> None:
        model = self.model
        prior = model.forward(X)
        noisy = model.likelihood(prior, X).covariance_matrix  # K + the noise of each point's task
        L = torch.linalg.cholesky(noisy)
        alpha = torch.cholesky_solve((y - prior.mean).unsqueeze(-1), L).squeeze(-1)
        data = X[:, :-1] if self.multitask else X
        self.d = data.shape[1]
        self.inputs, where = torch.unique(data, dim=0, return_inverse=True)
        A = torch.zeros(len(self.inputs), len(X), dtype=X.dtype)
        A[where, torch.arange(len(X))] = self._task_weight(X)
        self.a = A @ alpha  # mean = k(x, inputs) @ a
        V = torch.linalg.solve_triangular(L, A.T, upper=False)
        self.Q = V.T @ V  # = A K^-1 A^T: variance = k(x, x) - k(x, inputs) Q k(inputs, x)
        self.final_mean = float(model.forward(self._with_task(data[:1])).mean[0])

    def _task_weight(self, X: torch.Tensor) -> torch.Tensor:
        """Covariance factor between the final fidelity and each training point's task."""
        if not self.multitask:
            return torch.ones(len(X), dtype=X.dtype)
        task_kernel = self.model.covar_module.kernels[1]
        return task_kernel(self._with_task(X[:1, :-1]), X).to_dense()[0]

    def _with_task(self, data: torch.Tensor) -> torch.Tensor:
        if not self.multitask:
            return data
        return torch.cat([data, torch.full((len(data), 1), float(FINAL), dtype=data.dtype)], dim=-1)

    def _data_kernel(self):
        return self.model.covar_module.kernels[0] if self.multitask else self.model.covar_module

    # ------------------------------------------------------------------ the candidates' side
    def _standard(self, F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance in the model's standardized units."""
        kernel = self._data_kernel()
        mu, var = [], []
        for i in range(0, len(F), CHUNK):
            f = F[i:i + CHUNK]
            k = kernel(f, self.inputs).to_dense()
            prior_var = kernel(f, diag=True) * self._task_weight(self._with_task(f[:1]))[0]
            mu.append(self.final_mean + k @ self.a)
            var.append(prior_var - ((k @ self.Q) * k).sum(-1))
        return torch.cat(mu), torch.cat(var)

    def _standard_mean(self, F: torch.Tensor) -> torch.Tensor:
        return self._standard(F)[0]

    def joint(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and covariance at the final fidelity of a few configurations jointly (hundreds:
        the covariance is dense), in the data's units; the diagonal is ``__call__``'s variance."""
        with torch.no_grad():
            F = torch.as_tensor(features, dtype=self.inputs.dtype)
            kernel = self._data_kernel()
            k = kernel(F, self.inputs).to_dense()
            prior = kernel(F, F).to_dense() * self._task_weight(self._with_task(F[:1]))[0]
            mu, cov = self.final_mean + k @ self.a, prior - k @ self.Q @ k.T
            transform = getattr(self.model, "outcome_transform", None)
            if transform is not None:
                s = transform.stdvs.reshape(())
                mu, cov = transform.means.reshape(()) + s * mu, s * s * cov
        return mu.numpy(), cov.numpy()

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at the final fidelity, in the data's units."""
        if len(features) == 0:
            return np.zeros(0), np.zeros(0)
        with torch.no_grad():
            mu, var = self._standard(torch.as_tensor(features, dtype=self.inputs.dtype))
            sd = var.clamp_min(1e-12).sqrt()
            transform = getattr(self.model, "outcome_transform", None)
            if transform is not None:  # BoTorch's Standardize: y = mean + std * standardized
                mu = transform.means.reshape(()) + transform.stdvs.reshape(()) * mu
                sd = transform.stdvs.reshape(()) * sd
        return mu.numpy(), sd.numpy()
