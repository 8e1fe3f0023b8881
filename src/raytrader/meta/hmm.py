"""A Gaussian hidden Markov model of 1-bar log returns, used causally: fitted by EM (Baum-Welch)
on the returns known at a bar, and read through the **forward filter** only.

hmmlearn's ``predict`` (Viterbi) and ``predict_proba`` (forward-backward) both use the whole
sequence, so a state at t would depend on bars after t; the filter here uses the returns up to t
and the parameters fitted on returns up to the last refit, nothing later. States are sorted by
their volatility after every fit, so state 0 is always the calmest whatever EM's labelling (the
label switching between fits that hmmlearn users meet).

The recursions are numba-compiled: a fit of 5,000 returns with 4 states takes milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from raytrader.errors import ConfigError

_MIN_SIGMA = 1e-8


@dataclass(frozen=True)
class HmmParams:
    """Initial distribution, transition matrix (rows sum to 1), per-state mean and volatility of
    the 1-bar log return; states in increasing volatility."""

    start: np.ndarray
    transition: np.ndarray
    mean: np.ndarray
    sigma: np.ndarray
    log_likelihood: float
    iterations: int

    @property
    def states(self) -> int:
        return len(self.mean)


@nb.njit(cache=True)
def _emissions(returns: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    n, k = len(returns), len(mean)
    out = np.empty((n, k))
    for t in range(n):
        for j in range(k):
            z = (returns[t] - mean[j]) / sigma[j]
            out[t, j] = math.exp(-0.5 * z * z) / (sigma[j] * math.sqrt(2.0 * math.pi)) + 1e-300
    return out


@nb.njit(cache=True)
def _forward(
    emissions: np.ndarray, start: np.ndarray, transition: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled forward pass: alpha[t] = P(state_t | r_0..r_t); scale[t] = P(r_t | r_0..r_{t-1})."""
    n, k = emissions.shape
    alpha = np.empty((n, k))
    scale = np.empty(n)
    for t in range(n):
        total = 0.0
        for j in range(k):
            if t == 0:
                prior = start[j]
            else:
                prior = 0.0
                for i in range(k):
                    prior += alpha[t - 1, i] * transition[i, j]
            alpha[t, j] = prior * emissions[t, j]
            total += alpha[t, j]
        scale[t] = total
        for j in range(k):
            alpha[t, j] /= total
    return alpha, scale


@nb.njit(cache=True)
def _em_step(
    returns: np.ndarray, start: np.ndarray, transition: np.ndarray, mean: np.ndarray,
    sigma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:  # fmt: skip
    n, k = len(returns), len(mean)
    emissions = _emissions(returns, mean, sigma)
    alpha, scale = _forward(emissions, start, transition)
    beta = np.empty((n, k))
    beta[n - 1, :] = 1.0
    for t in range(n - 2, -1, -1):
        for i in range(k):
            acc = 0.0
            for j in range(k):
                acc += transition[i, j] * emissions[t + 1, j] * beta[t + 1, j]
            beta[t, i] = acc / scale[t + 1]
    gamma = alpha * beta
    xi = np.zeros((k, k))
    for t in range(n - 1):
        for i in range(k):
            for j in range(k):
                xi[i, j] += (
                    alpha[t, i]
                    * transition[i, j]
                    * emissions[t + 1, j]
                    * beta[t + 1, j]
                    / scale[t + 1]
                )
    new_start = gamma[0] / gamma[0].sum()
    new_transition = np.empty((k, k))
    for i in range(k):
        row = xi[i].sum()
        for j in range(k):
            new_transition[i, j] = xi[i, j] / row if row > 0 else 1.0 / k
    new_mean = np.empty(k)
    new_sigma = np.empty(k)
    for j in range(k):
        weight = gamma[:, j].sum()
        m = (gamma[:, j] * returns).sum() / weight
        var = (gamma[:, j] * (returns - m) ** 2).sum() / weight
        new_mean[j] = m
        new_sigma[j] = max(math.sqrt(var), 1e-8)
    log_likelihood = np.log(scale).sum()
    return new_start, new_transition, new_mean, new_sigma, log_likelihood


def _initial_sigmas(r: np.ndarray, states: int) -> list[np.ndarray]:
    """Deterministic EM starts: volatilities spread over the quantiles of |r|, and spread
    geometrically over the range of the 20-bar rolling volatility (which finds a regime that
    fills most of the sample, where the first start puts two states on it)."""
    by_size = np.quantile(np.abs(r), np.linspace(0.3, 0.95, states)) * 1.25
    window = min(20, len(r))
    rolling = np.sqrt(np.convolve(r * r, np.ones(window) / window, mode="valid"))
    low, high = np.quantile(rolling, [0.05, 0.95])
    by_range = np.geomspace(max(low, _MIN_SIGMA), max(high, 2 * _MIN_SIGMA), states)
    return [np.maximum(by_size, _MIN_SIGMA), by_range]


def fit_hmm(
    returns: np.ndarray, states: int = 4, max_iterations: int = 200, tolerance: float = 1e-7
) -> HmmParams:
    """EM from each deterministic start (:func:`_initial_sigmas`, zero means, sticky transitions);
    the fit of the highest likelihood. The same returns give the same parameters, bit for bit."""
    r = np.ascontiguousarray(returns, dtype=np.float64)
    if len(r) < 10 * states or not np.isfinite(r).all():
        raise ConfigError(
            f"an HMM of {states} states needs at least {10 * states} finite returns, got {len(r)}"
        )
    if not 2 <= states <= 6:
        raise ConfigError(f"an HMM takes 2 to 6 states, got {states}")
    fits = [_fit_from(r, sigma, max_iterations, tolerance) for sigma in _initial_sigmas(r, states)]
    return max(fits, key=lambda fit: fit.log_likelihood)


def _fit_from(r: np.ndarray, sigma: np.ndarray, max_iterations: int, tolerance: float) -> HmmParams:
    states = len(sigma)
    mean = np.zeros(states)
    stay = 0.98
    transition = np.full((states, states), (1.0 - stay) / (states - 1))
    np.fill_diagonal(transition, stay)
    start = np.full(states, 1.0 / states)
    previous = -np.inf
    iterations = 0
    log_likelihood = -np.inf
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - the count is reported
        start, transition, mean, sigma, log_likelihood = _em_step(r, start, transition, mean, sigma)
        if log_likelihood - previous < tolerance * abs(log_likelihood):
            break
        previous = log_likelihood
    order = np.argsort(sigma, kind="stable")
    return HmmParams(
        start=start[order],
        transition=transition[np.ix_(order, order)],
        mean=mean[order],
        sigma=sigma[order],
        log_likelihood=float(log_likelihood),
        iterations=iterations,
    )


def filter_probabilities(returns: np.ndarray, params: HmmParams) -> np.ndarray:
    """P(state_t | r_0..r_t) for every t (rows sum to 1): the forward filter, causal."""
    r = np.ascontiguousarray(returns, dtype=np.float64)
    emissions = _emissions(r, params.mean, params.sigma)
    alpha, _ = _forward(emissions, params.start, params.transition)
    return alpha


@nb.njit(cache=True)
def _step(
    previous: np.ndarray, r: float, transition: np.ndarray, mean: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    k = len(mean)
    out = np.empty(k)
    total = 0.0
    for j in range(k):
        prior = 0.0
        for i in range(k):
            prior += previous[i] * transition[i, j]
        z = (r - mean[j]) / sigma[j]
        emission = math.exp(-0.5 * z * z) / (sigma[j] * math.sqrt(2.0 * math.pi)) + 1e-300
        out[j] = prior * emission
        total += out[j]
    for j in range(k):
        out[j] /= total
    return out


def filter_step(previous: np.ndarray, r: float, params: HmmParams) -> np.ndarray:
    """One bar of the forward filter: from P(state_{t-1} | ...) to P(state_t | ..., r_t), with
    the same arithmetic as :func:`filter_probabilities` (bit for bit)."""
    return np.asarray(_step(previous, float(r), params.transition, params.mean, params.sigma))
