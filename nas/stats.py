"""Statistics for ablation studies: means with t-based confidence intervals and paired comparisons.

Plain functions on plain sequences (scipy supplies the Student-t quantiles and tails).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from search_spaces.errors import FsnasError


class StatsError(FsnasError):
    """A statistic was asked of data that cannot give it (e.g. unpaired samples)."""


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and a two-sided confidence interval of the mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


@dataclass(frozen=True)
class PairedComparison:
    """Variant minus base over paired seeds: mean difference, its CI and a two-sided p-value."""

    n: int
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Return mean, sample std (ddof=1) and the Student-t confidence interval of the mean.

    With a single value the std is 0 and the interval is undefined (NaN bounds).

    Raises:
        StatsError: no values, or a confidence outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise StatsError(f"confidence must be in (0, 1), got {confidence!r}")
    data = [float(v) for v in values]
    n = len(data)
    if n == 0:
        raise StatsError("cannot summarise an empty sample")
    mean = math.fsum(data) / n
    if n == 1:
        return Summary(1, mean, 0.0, math.nan, math.nan, confidence)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in data) / (n - 1))
    from scipy import stats  # imported on use: scipy.stats costs ~1 s at CLI start-up

    t = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1))
    half = t * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half, confidence)


def paired_comparison(
    variant: Sequence[float], base: Sequence[float], confidence: float = 0.95
) -> PairedComparison:
    """Compare ``variant`` with ``base`` seed by seed (paired t-test on the differences).

    A zero-variance difference gives p = 0 when the mean difference is non-zero, else p = 1.

    Raises:
        StatsError: the samples differ in length or have fewer than two pairs.
    """
    if len(variant) != len(base):
        raise StatsError(f"paired samples differ in length: {len(variant)} vs {len(base)} seeds")
    if len(variant) < 2:
        raise StatsError(f"a paired comparison needs at least 2 seeds, got {len(variant)}")
    diffs = [float(v) - float(b) for v, b in zip(variant, base)]
    summary = summarize(diffs, confidence)
    n = summary.n
    if summary.std == 0.0:
        p_value = 1.0 if summary.mean == 0.0 else 0.0
    else:
        t_stat = summary.mean / (summary.std / math.sqrt(n))
        from scipy import stats

        p_value = float(2 * stats.t.sf(abs(t_stat), df=n - 1))
    return PairedComparison(
        n, summary.mean, summary.std, summary.ci_low, summary.ci_high, p_value, confidence
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Return Holm's step-down adjusted p-values (same order): family-wise error control.

    The k-th smallest p (from 0) is multiplied by ``m - k`` and the results made monotone;
    an adjusted p below alpha rejects its hypothesis with family-wise error at most alpha.
    NaN p-values stay NaN and do not count in ``m``.
    """
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(float(p)))
    m = len(indexed)
    out = [math.nan] * len(p_values)
    running = 0.0
    for k, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - k) * float(p)))
        out[i] = running
    return out
