"""Mean and confidence interval over seeds.

For n runs that differ only in their seed, with values x_1..x_n, mean m and sample standard
deviation s (ddof 1), the interval is the Student-t 95 % interval of the mean,

    m ± t_{0.975, n-1} · s / sqrt(n),

which assumes the seed-to-seed values are roughly normal. With n = 1 there is no interval (None).
"""
from __future__ import annotations

import math
import statistics

LEVEL = 0.95
INTERVAL_NAME = "Student-t 95% confidence interval of the mean over seeds"


def mean_ci(values, level: float = LEVEL) -> tuple[float | None, float | None]:
    """(mean, half-width) of the finite values; (None, None) without any, (mean, None) with one."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None, None
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, None
    from scipy.stats import t

    return m, float(t.ppf(0.5 + level / 2, len(xs) - 1)) * statistics.stdev(xs) / math.sqrt(len(xs))
