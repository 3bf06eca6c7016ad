"""Test statistics without scipy: binomial test, Student t and normal tails, Diebold-Mariano;
and the interval (Winkler) score."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cryptopipe_model.features import FloatArray


def binomial_two_sided_p(successes: int, trials: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test: the probability of outcomes no likelier than observed."""
    if trials == 0:
        return 1.0
    if not 0 <= successes <= trials:
        raise ValueError("successes must lie in 0..trials")
    k = np.arange(trials + 1)
    if p in (0.0, 1.0):
        return 1.0 if successes == round(p * trials) else 0.0
    log_pmf = (
        math.lgamma(trials + 1)
        - np.array([math.lgamma(i + 1) + math.lgamma(trials - i + 1) for i in k])
        + k * math.log(p)
        + (trials - k) * math.log1p(-p)
    )
    # Relative tolerance as in common implementations, so ties in likelihood count as extreme.
    extreme = log_pmf <= log_pmf[successes] + 1e-7
    return float(min(1.0, np.exp(log_pmf[extreme]).sum()))


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    # Modified Lentz evaluation of the continued fraction for the incomplete beta function.
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The fraction converges fast for x below the mean a / (a + b); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


@dataclass(frozen=True)
class DieboldMariano:
    """DM statistic with the Harvey-Leybourne-Newbold correction; positive means the first
    forecast has the larger loss. p is two-sided, from Student t with n - 1 df."""

    statistic: float
    p_value: float
    mean_loss_difference: float
    n: int


def diebold_mariano(errors_a: FloatArray, errors_b: FloatArray, horizon: int) -> DieboldMariano:
    """Squared-error DM test of forecast errors a against b at forecast horizon `horizon`.

    The loss differential of h-step forecasts is autocorrelated up to lag h - 1, so its
    long-run variance sums autocovariances 0..h-1 (rectangular window); if that sum is not
    positive, the lag-0 variance is used instead.
    """
    d = np.asarray(errors_a, dtype=float) ** 2 - np.asarray(errors_b, dtype=float) ** 2
    n = len(d)
    if n < 2:
        return DieboldMariano(math.nan, math.nan, math.nan, n)
    mean = float(d.mean())
    centered = d - mean
    gamma = [float(centered[j:] @ centered[: n - j]) / n for j in range(min(horizon, n))]
    long_run = gamma[0] + 2.0 * sum(gamma[1:])
    if long_run <= 0:
        long_run = gamma[0]
    if long_run <= 0:
        return DieboldMariano(math.nan, math.nan, mean, n)
    dm = mean / math.sqrt(long_run / n)
    shrink = (n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n
    if shrink <= 0:
        return DieboldMariano(math.nan, math.nan, mean, n)
    correction = math.sqrt(shrink)
    statistic = dm * correction
    return DieboldMariano(statistic, student_t_two_sided_p(statistic, n - 1), mean, n)


def winkler_score(
    actual: FloatArray, lower: FloatArray, upper: FloatArray, coverage: float
) -> FloatArray:
    """Elementwise interval score of a central interval at `coverage` (Winkler 1972; Gneiting
    and Raftery 2007): its width, plus 2 / alpha times how far the actual lies outside it,
    alpha = 1 - coverage. Lower is better; a proper score, so the true quantiles minimize it."""
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    actual, lower, upper = (np.asarray(x, dtype=np.float64) for x in (actual, lower, upper))
    penalty = 2.0 / (1.0 - coverage)
    below = np.maximum(lower - actual, 0.0)
    above = np.maximum(actual - upper, 0.0)
    return np.asarray((upper - lower) + penalty * (below + above), dtype=np.float64)
