"""Mean and 95% confidence interval over seeds, with Student's t (few seeds, unknown variance).

With n seeds the interval is mean ± t(0.975, n - 1) * s / sqrt(n), s the sample standard
deviation (ddof = 1). A single seed gives no interval: it is reported as such, never as ± 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

from sparta.errors import SpartaError

NO_INTERVAL = "n/a"


@dataclass(frozen=True)
class Estimate:
    """A mean over n values and the half width of its confidence interval (None when n < 2)."""

    mean: float
    half_width: float | None
    n: int
    confidence: float = 0.95

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def format(self, scale: float = 1.0, digits: int = 2) -> str:
        """'mean ± half' (values times `scale`), or 'mean ± n/a' for a single value."""
        half = NO_INTERVAL if self.half_width is None else f"{scale * self.half_width:.{digits}f}"
        return f"{scale * self.mean:.{digits}f} ± {half}"


def binomial_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval of an accuracy measured on n test images.

    The test set is a sample: 90% on 200 images is 85.0-93.8%, on 10,000 89.4-90.6%.
    """
    if n < 1 or not 0 <= correct <= n:
        raise SpartaError(f"a binomial interval needs 0 <= correct <= n and n >= 1, got {correct} of {n}")
    found = scipy_stats.binomtest(correct, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(found.low), float(found.high)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Mean and Student-t confidence interval of `values` (seeds are few, the variance unknown)."""
    if not 0 < confidence < 1:
        raise SpartaError(f"confidence must lie in (0, 1), got {confidence}")
    data = [float(v) for v in values]
    if not data:
        raise SpartaError("cannot summarise an empty list of values")
    if not all(math.isfinite(v) for v in data):
        raise SpartaError(f"cannot summarise non-finite values: {data}")
    n = len(data)
    mean = math.fsum(data) / n
    if n == 1:
        return Estimate(mean, None, 1, confidence)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in data) / (n - 1))
    t = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1))
    return Estimate(mean, t * sd / math.sqrt(n), n, confidence)
