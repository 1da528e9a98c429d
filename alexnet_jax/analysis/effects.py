"""Seed-paired effect estimates for ablations: mean difference, t confidence interval, verdict.

Every configuration of a sweep runs the same seeds, and seed k of two configurations shares its
initialisation and data order, so the effect of a change is estimated from the per-seed differences
d_k = ablated_k - baseline_k: mean d, and the interval mean +- t_{0.975, n-1} * sd(d) / sqrt(n) (the
paired t interval). A run that did not train (`did_not_train`) is reported as such and left out of the
pairs, never averaged in.
"""

import dataclasses
import math
from typing import Mapping, Optional

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
# A run "did not train" when its final top-1 accuracy is under 1.5x chance (error above 1 - 1.5 / classes):
# on 10 classes, an error above 85% where chance is 90%.
TRAINED_ACCURACY_OVER_CHANCE = 1.5


@dataclasses.dataclass(frozen=True)
class Interval:
  """The mean of n paired differences and its confidence interval [low, high] (NaN bounds when n < 2)."""

  mean: float
  low: float
  high: float
  n: int

  @property
  def half_width(self) -> float:
    return (self.high - self.low) / 2

  def excludes_zero(self) -> bool:
    return self.n >= 2 and (self.low > 0 or self.high < 0)

  def largest_hidden(self) -> float:
    """The largest effect (in absolute value) still inside the interval: what a 'not detected' could hide."""
    return max(abs(self.low), abs(self.high))


def t_interval(values, confidence: float = CONFIDENCE) -> Interval:
  """Mean of `values` with its two-sided t interval; a zero spread gives a zero-width interval."""
  values = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
  n = len(values)
  if n == 0:
    return Interval(math.nan, math.nan, math.nan, 0)
  mean = float(values.mean())
  if n < 2:
    return Interval(mean, math.nan, math.nan, n)
  half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
  return Interval(mean, mean - half, mean + half, n)


def paired_difference(
  baseline: Mapping[int, float], ablated: Mapping[int, float], confidence: float = CONFIDENCE
) -> Interval:
  """ablated - baseline over the seeds both have a value for (dicts seed -> value)."""
  seeds = sorted(set(baseline) & set(ablated))
  return t_interval([ablated[s] - baseline[s] for s in seeds], confidence)


def verdict(interval: Interval, paper_sign: Optional[float]) -> str:
  """'confirmed' (interval excludes 0 on the paper's side), 'reversed' (excludes 0 on the other side),
  'not detected' (includes 0), 'too few seeds' (n < 2, or seeds whose differences agree exactly: a zero
  spread from a few seeds of quantised errors is chance, and its zero-width interval says nothing);
  'measured' where the paper states no direction."""
  if interval.n < 2 or interval.high - interval.low <= 1e-9 * max(1.0, abs(interval.mean)):  # up to rounding
    return "too few seeds"
  if not interval.excludes_zero():
    return "not detected"
  if not paper_sign:
    return "measured"
  return "confirmed" if math.copysign(1, interval.mean) == math.copysign(1, paper_sign) else "reversed"


def did_not_train(top1_error: float, num_classes: int) -> bool:
  """True when a final top-1 error is within reach of chance (see TRAINED_ACCURACY_OVER_CHANCE)."""
  return not math.isfinite(top1_error) or top1_error > 1.0 - TRAINED_ACCURACY_OVER_CHANCE / num_classes
