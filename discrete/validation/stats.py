"""Mean and confidence interval over seeds.

For n runs that differ only in their seed, with values x_1..x_n, mean m and sample standard
deviation s (ddof 1), the interval is the Student-t 95 % interval of the mean,

    m ± t_{0.975, n-1} · s / sqrt(n),

which assumes the seed-to-seed values are roughly normal. With n < 3 there is no interval (None): with
two seeds t_{0.975, 1} = 12.7 and s is one difference, so the band says nothing (a residual in [0, 1]
got -1.3 .. 2.6). Intervals are clipped to the metric's range (:data:`RANGES`, :func:`clip`) where shown.
"""
from __future__ import annotations

import math
import statistics

LEVEL = 0.95
MIN_N = 3  # fewest finite values for an interval
INTERVAL_NAME = "Student-t 95% confidence interval of the mean over seeds"
NO_INTERVAL = f"n < {MIN_N}: no interval (too few seeds for a t-interval to mean anything); the points are the seeds"

# the values a metric can take: an interval is clipped to them where shown
RANGES = {"val_ppl": (1.0, math.inf), "val_loss": (0.0, math.inf), "loss": (0.0, math.inf),
          "tokens_per_s": (0.0, math.inf), "peak_mem_gb": (0.0, math.inf), "residual": (0.0, 1.0),
          "drift_window": (0.0, 1.0), "visited_dim": (0.0, math.inf), "update_eff_rank": (0.0, math.inf)}


def clip(metric: str, mean: float, half: float) -> tuple[float, float]:
    """(low, high) of ``mean ± half`` within the metric's range (unbounded for a metric not in RANGES)."""
    lo, hi = RANGES.get(metric, (-math.inf, math.inf))
    return max(lo, mean - half), min(hi, mean + half)


def mean_ci(values, level: float = LEVEL) -> tuple[float | None, float | None]:
    """(mean, half-width) of the finite values; (None, None) without any, (mean, None) with fewer than MIN_N."""
    xs = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not xs:
        return None, None
    m = statistics.fmean(xs)
    if len(xs) < MIN_N:
        return m, None
    from scipy.stats import t

    return m, float(t.ppf(0.5 + level / 2, len(xs) - 1)) * statistics.stdev(xs) / math.sqrt(len(xs))
