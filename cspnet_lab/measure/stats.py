"""Statistics, in one place: Student-t intervals, paired bootstrap intervals, verdicts, multiple comparisons.

* :func:`t_quantile` / :func:`t_cdf`: Student's t without scipy (a continued fraction and bisection).
* :func:`paired_interval` (:class:`PairedInterval`): a t interval for the mean of paired differences, with
  Nadeau and Bengio's (2003) correction for cross-validation folds that share training data.
* :func:`mean_interval`, :func:`separated`: a t interval for the mean of independent values (seeds).
* :func:`paired_bootstrap`, :func:`realised_fraction`, :func:`verdict`: time ratios from interleaved rounds.
* :func:`holm`: Holm's step-down correction of a family of p-values (or intervals) for multiple comparisons.
* :func:`percent_change`: ``100 * (new / old - 1)``, the one way the package writes a change.

``bench``, ``gradients`` and ``experiments`` import from here (and re-export their old names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Sequence

import numpy as np


from ..models.counting import percent_change  # noqa: F401,E402 (defined once, below the models)


def _numbers(name: str, values) -> list[float]:
    """A sequence of real numbers as floats; a string (which would iterate characters) is refused."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (Real, np.floating, np.integer)):
            raise ValueError(f"{name} must hold numbers only, got {v!r}")
        out.append(float(v))
    return out


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b), by its continued fraction (Lentz's method)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below this point
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * f / a


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + x * x))
    return 1.0 - tail if x >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The x with P(T <= x) = p (bisection on :func:`t_cdf`; no scipy needed)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class PairedInterval:
    """Mean of a - b over pairs, its confidence interval, and what the interval allows one to say."""

    mean: float
    low: float
    high: float
    n: int
    sd: float            # standard deviation of the differences
    confidence: float
    corrected: bool      # Nadeau-Bengio correction applied

    @property
    def verdict(self) -> str:
        """'higher' / 'lower' (a against b) when the interval excludes 0, else 'not distinguishable'."""
        if self.low > 0:
            return "higher"
        if self.high < 0:
            return "lower"
        return "not distinguishable"

    def text(self, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
        f = f"{{:+.{digits}f}}"
        return (f"{f.format(scale * self.mean)}{unit} [{f.format(scale * self.low)}, "
                f"{f.format(scale * self.high)}]{unit}")


def paired_interval(a, b, confidence: float = 0.95, test_train_ratio: float | None = None) -> PairedInterval:
    """Confidence interval for mean(a - b), a[i] and b[i] measured on the same seed and fold.

    Student's t over the n differences: mean +/- t(1 - alpha/2, n - 1) x se, se = sd / sqrt(n). Folds of
    a cross-validation share most of their training data, so their differences are not independent and
    that se is too small; ``test_train_ratio`` (validation / training images, 1/(k-1) for k folds)
    applies Nadeau and Bengio's (2003) corrected variance, se = sd x sqrt(1/n + test_train_ratio).
    """
    a, b = _numbers("a", a), _numbers("b", b)
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length (one value per pair); got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a paired interval needs at least 2 pairs, got {len(a)}")
    if not all(math.isfinite(v) for v in a + b):
        raise ValueError("a and b must hold finite numbers")
    if isinstance(confidence, bool) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if test_train_ratio is not None and (isinstance(test_train_ratio, bool) or not isinstance(test_train_ratio, Real)
                                         or not 0 <= test_train_ratio < math.inf):
        raise ValueError(f"test_train_ratio must be a finite number >= 0 or None, got {test_train_ratio!r}")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1))
    factor = 1 / n + (test_train_ratio or 0.0)
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd * math.sqrt(factor)
    return PairedInterval(mean, mean - half, mean + half, n, sd, confidence, test_train_ratio is not None)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t confidence interval for the mean of independent values (seeds)."""
    values = _numbers("values", values)
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"values must hold at least 2 finite numbers, got {values!r}")
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def separated(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """True when two (mean, low, high) intervals do not overlap."""
    return a[2] < b[1] or b[2] < a[1]


def paired_bootstrap(times_s, base_s, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0):
    """The time ratio of a model to its baseline, ``(estimate, low, high)``, with a
    percentile-bootstrap interval.

    ``times_s[k]`` and ``base_s[k]`` come from the same interleaved round ``k``, so
    the estimate is the median of the per-round ratios and the bootstrap resamples
    whole rounds (one index for both models): a slow round slows both and cancels in
    its ratio. Given repetitions of different lengths (not from one run) the pairs do
    not exist: the ratio of medians, each resampled on its own.
    """
    a, b = np.asarray(times_s, dtype=float), np.asarray(base_s, dtype=float)
    if a.size == 0 or b.size == 0 or not (np.all(a > 0) and np.all(b > 0)):
        raise ValueError("times_s and base_s must be non-empty lists of positive times")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    rng = np.random.default_rng(seed)
    q = [(1 - level) / 2, (1 + level) / 2]
    if a.size == b.size:
        r = a / b
        boots = np.median(r[rng.integers(0, r.size, (n_boot, r.size))], axis=1)
        est = float(np.median(r))
    else:
        boots = (np.median(a[rng.integers(0, a.size, (n_boot, a.size))], axis=1)
                 / np.median(b[rng.integers(0, b.size, (n_boot, b.size))], axis=1))
        est = float(np.median(a) / np.median(b))
    lo, hi = np.quantile(boots, q)
    return est, float(min(lo, est)), float(max(hi, est))


def realised_fraction(time_ratio: float, mac_ratio: float):
    """The share of the multiply-add cut that the time realises:
    (1 - t/t_base) / (1 - m/m_base).

    1 means the time falls exactly as the multiply-adds do, 0 that it does not fall
    at all, below 0 that it rises. None when the multiply-adds do not change (the
    fraction of no cut is undefined).
    """
    if mac_ratio == 1:
        return None
    return (1 - time_ratio) / (1 - mac_ratio)


MIN_ROUNDS = 10   # below this a bootstrap interval is too coarse to carry a verdict


def verdict(low: float, high: float, rounds: int = MIN_ROUNDS) -> str:
    """What a time-ratio interval lets us say about a model against the baseline on this machine."""
    if rounds < MIN_ROUNDS:
        return f"too few rounds (< {MIN_ROUNDS})"
    if low <= 1.0 <= high:
        return "not distinguishable"
    return "faster" if high < 1.0 else "slower"




def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm's (1979) step-down correction: which of m hypotheses are rejected at family-wise level ``alpha``.

    Sort the p-values; the k-th smallest (k = 0, 1, ...) is compared with alpha / (m - k), and testing
    stops at the first that fails. Controls the chance of any false rejection in the family at ``alpha``,
    like Bonferroni (every p against alpha / m), and rejects at least as many.
    """
    p = _numbers("p_values", p_values)
    if not all(0.0 <= v <= 1.0 for v in p):
        raise ValueError(f"p_values must lie in [0, 1], got {p!r}")
    if isinstance(alpha, bool) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    m = len(p)
    rejected = [False] * m
    for k, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        if p[i] > alpha / (m - k):
            break
        rejected[i] = True
    return rejected


def t_test_p(mean: float, se: float, df: float) -> float:
    """Two-sided p-value of a t statistic ``mean / se`` with ``df`` degrees of freedom."""
    if not se > 0:
        raise ValueError(f"se must be > 0, got {se!r}")
    t = abs(mean) / se
    return 2.0 * (1.0 - t_cdf(t, df))
