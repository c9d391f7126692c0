"""Gaussian-process regression: an ARD squared-exponential kernel plus a linear kernel.

Hyperparameters (one length scale per feature, the two kernel variances and the noise) maximise the
marginal likelihood of a random subset of the training rows (``fit_subset``; Adam on PyTorch's
autograd). That subset then serves as the inducing points of a subset-of-regressors posterior
fitted on every row, so prediction costs one kernel row per inducing point whatever the data size;
with no more rows than ``fit_subset`` it is the exact posterior. Sample weights scale each row's
noise variance by ``1/w``. The fitted state is JSON plus one NumPy array file (no pickle).
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from accelnas.surrogates.models.base import Files, Surrogate

_JITTER = 1e-6
_EXP_SAFE = 300.0  # exp(300) is far from float64's overflow at 709


@lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, built once (a fresh one takes milliseconds)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _kernel_parts(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``exp(-|a - b|² / 2)`` between the rows of two length-scaled matrices."""
    sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    np.maximum(sq, 0.0, out=sq)
    sq *= -0.5
    return np.exp(sq, out=sq)


def learn_hyperparameters(
    S: np.ndarray, t: np.ndarray, w: np.ndarray, steps: int, learning_rate: float
) -> dict[str, Any]:
    """Maximise the log marginal likelihood of standardised rows ``S`` and targets ``t``.

    Returns length scales, signal and linear variances and the noise variance (of a weight-1 row).
    """
    import torch

    X = torch.as_tensor(S, dtype=torch.float64)
    y = torch.as_tensor(t, dtype=torch.float64)[:, None]
    inv_w = torch.as_tensor(1.0 / w, dtype=torch.float64)
    n, d = X.shape
    log_ls = torch.full((d,), 0.5 * np.log(d), dtype=torch.float64, requires_grad=True)
    log_sf = torch.zeros((), dtype=torch.float64, requires_grad=True)
    log_lin = torch.tensor(np.log(0.1), dtype=torch.float64, requires_grad=True)
    log_sn = torch.tensor(np.log(0.2), dtype=torch.float64, requires_grad=True)
    params = [log_ls, log_sf, log_lin, log_sn]
    optimiser = torch.optim.Adam(params, lr=learning_rate)
    eye = torch.eye(n, dtype=torch.float64)
    for _ in range(steps):
        optimiser.zero_grad()
        Z = X / log_ls.exp()
        sq = ((Z * Z).sum(1)[:, None] + (Z * Z).sum(1)[None, :] - 2.0 * Z @ Z.T).clamp_min(0.0)
        K = (2 * log_sf).exp() * torch.exp(-0.5 * sq) + (2 * log_lin).exp() * (X @ X.T) / d
        K = K + torch.diag((2 * log_sn).exp() * inv_w) + _JITTER * eye
        L = torch.linalg.cholesky(K)
        alpha = torch.cholesky_solve(y, L)
        nll = 0.5 * (y * alpha).sum() + torch.log(torch.diagonal(L)).sum()
        (nll / n).backward()
        optimiser.step()
    with torch.no_grad():
        return {
            "length_scales": log_ls.exp().numpy().copy(),
            "signal_var": float((2 * log_sf).exp()),
            "linear_var": float((2 * log_lin).exp()),
            "noise_var": float((2 * log_sn).exp()),
        }


class GaussianProcessSurrogate(Surrogate):
    """GP regression on standardised features; predicts with NumPy from the stored inducing points."""

    family = "gp"
    _own_params: ClassVar[dict[str, Any]] = {"fit_subset": 1200, "steps": 200, "learning_rate": 0.05}
    _rules: ClassVar[dict[str, str]] = {"fit_subset": "at_least_two", "steps": "count", "learning_rate": "positive"}

    def __init__(self, *, encoding: str = "analytic", transform: str = "log", seed: int = 0, **params: Any) -> None:
        super().__init__(encoding=encoding, transform=transform, seed=seed, **params)

    def uses_seed(self, n_rows: int) -> bool:
        return n_rows > int(self.fit_subset)  # the seed draws the subset; up to fit_subset rows it is all of them

    def _fit(self, X: np.ndarray, z: np.ndarray, weight: np.ndarray | None = None) -> None:
        if int(self.fit_subset) < 2 or int(self.steps) < 1:
            raise ValueError("the GP needs fit_subset >= 2 and steps >= 1")
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        self.z_mean_, self.z_scale_ = float(z.mean()), float(z.std() or 1.0)
        S = (X - self.mean_) / self.scale_
        t = (z - self.z_mean_) / self.z_scale_
        w = np.ones(len(t)) if weight is None else np.maximum(weight, 1e-12)
        rows = np.random.default_rng(self.seed).permutation(len(t))[: int(self.fit_subset)]
        rows.sort()
        hyper = learn_hyperparameters(S[rows], t[rows], w[rows], int(self.steps), float(self.learning_rate))
        self.length_scales_ = hyper["length_scales"]
        self.signal_var_, self.linear_var_ = hyper["signal_var"], hyper["linear_var"]
        self.noise_var_ = hyper["noise_var"]
        inducing = S[rows]
        K_mn = self._kernel(inducing, S)
        noise = self.noise_var_ / w
        if len(rows) == len(t):  # exact posterior mean: (K + noise)^-1 t, rows in their original order
            K_mn[np.arange(len(t)), np.arange(len(t))] += noise + _JITTER
            weights = np.linalg.solve(K_mn, t[rows])
        else:  # subset of regressors: (noise·K_mm + K_mn W K_nm)^-1 K_mn W t, with W = 1/noise
            K_mm = self._kernel(inducing, inducing)
            scaled = K_mn / noise
            A = self.noise_var_ * K_mm + scaled @ K_mn.T * self.noise_var_
            A[np.diag_indices_from(A)] += _JITTER
            weights = np.linalg.solve(A, self.noise_var_ * (scaled @ t))
        self._set_points(inducing, weights)

    def _kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """The full kernel between standardised rows."""
        ls = self.length_scales_
        rbf = _kernel_parts(A / ls, B / ls)
        return self.signal_var_ * rbf + self.linear_var_ * (A @ B.T) / A.shape[1]

    def _set_points(self, inducing: np.ndarray, weights: np.ndarray) -> None:
        self.points_ = inducing / self.length_scales_  # length-scaled, for the RBF part
        self.points_sq_ = (self.points_**2).sum(axis=1)
        self.rbf_weights_ = self.signal_var_ * weights
        self.points_safe_ = bool(len(self.points_sq_)) and 0.5 * float(self.points_sq_.max()) < _EXP_SAFE
        self.scaled_weights_ = self.rbf_weights_ * np.exp(-0.5 * np.minimum(self.points_sq_, 2 * _EXP_SAFE))
        self.linear_coef_ = self.linear_var_ * (inducing.T @ weights) / inducing.shape[1]
        self.inducing_, self.weights_ = inducing, weights

    def _predict(self, X: np.ndarray) -> np.ndarray:
        S = (X - self.mean_) / self.scale_
        # one BLAS thread: idle OpenBLAS threads keep spinning after a call and slow the tree
        # models' OpenMP threads that often run next (see models/additive.py)
        with _blas_controller().limit(limits=1, user_api="blas"):
            Z = S / self.length_scales_
            linear = S @ self.linear_coef_
            # exp(-|z - p|²/2) = exp(-|z|²/2) · exp(z·p) · exp(-|p|²/2): one pass over the kernel
            # matrix instead of four; the direct form where exp(z·p) could overflow
            cross = Z @ self.points_.T
            half_sq = 0.5 * np.einsum("ij,ij->i", Z, Z)
            if self.points_safe_ and cross.size and max(cross.max(), half_sq.max()) < _EXP_SAFE:
                rbf = np.exp(-half_sq) * (np.exp(cross, out=cross) @ self.scaled_weights_)
            else:
                sq = half_sq[:, None] + 0.5 * self.points_sq_[None, :] - cross
                np.maximum(sq, 0.0, out=sq)
                rbf = np.exp(-sq, out=sq) @ self.rbf_weights_
        return (rbf + linear) * self.z_scale_ + self.z_mean_

    def _state(self) -> tuple[dict[str, Any], Files]:
        buffer = io.BytesIO()
        np.save(buffer, np.column_stack([self.inducing_, self.weights_]), allow_pickle=False)
        data = {
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "z_mean": self.z_mean_,
            "z_scale": self.z_scale_,
            "length_scales": self.length_scales_.tolist(),
            "signal_var": self.signal_var_,
            "linear_var": self.linear_var_,
            "noise_var": self.noise_var_,
            "points_file": "gp-points.npy",
        }
        return data, {"gp-points.npy": buffer.getvalue()}

    def _load_state(self, data: dict[str, Any], files: Files) -> None:
        self.mean_ = np.asarray(data["mean"], dtype=np.float64)
        self.scale_ = np.asarray(data["scale"], dtype=np.float64)
        self.z_mean_, self.z_scale_ = float(data["z_mean"]), float(data["z_scale"])
        self.length_scales_ = np.asarray(data["length_scales"], dtype=np.float64)
        self.signal_var_, self.linear_var_ = float(data["signal_var"]), float(data["linear_var"])
        self.noise_var_ = float(data["noise_var"])
        table = np.load(io.BytesIO(files[data["points_file"]]), allow_pickle=False)
        if table.ndim != 2 or table.shape[1] != len(self.mean_) + 1 or len(self.length_scales_) != len(self.mean_):
            raise ValueError(f"the GP points file has shape {table.shape}, not (n, {len(self.mean_) + 1})")
        self._set_points(np.ascontiguousarray(table[:, :-1], dtype=np.float64), table[:, -1].astype(np.float64))
