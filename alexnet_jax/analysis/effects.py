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
  """The mean of n paired differences and its confidence interval [low, high].

  Attributes:
    mean: the mean difference (NaN when n is 0).
    low, high: the interval's bounds (NaN when n < 2).
    n: how many differences it rests on.
  """

  mean: float
  low: float
  high: float
  n: int

  def excludes_zero(self) -> bool:
    """True when n >= 2 and 0 lies outside [low, high]: the effect's sign is resolved."""
    return self.n >= 2 and (self.low > 0 or self.high < 0)

  def largest_hidden(self) -> float:
    """The largest effect (in absolute value) still inside the interval: what a 'not detected' could hide.

    NaN when n < 2.
    """
    return max(abs(self.low), abs(self.high))


def t_interval(values, confidence: float = CONFIDENCE) -> Interval:
  """Mean of `values` with its two-sided t interval; a zero spread gives a zero-width interval.

  Args:
    values: numbers; None and non-finite ones are left out.
    confidence: the interval's coverage, e.g. 0.95.

  Returns:
    Interval(mean, mean - h, mean + h, n) with h = t_{(1 + confidence) / 2, n-1} * sd / sqrt(n), sd with
    n - 1 degrees of freedom; NaN bounds when n < 2, and a NaN mean too when n is 0.
  """
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
  """The paired t interval of ablated - baseline over the seeds both have a value for.

  Args:
    baseline: seed -> value (e.g. final top-1 error) of the baseline configuration.
    ablated: seed -> value of the changed configuration.
    confidence: the interval's coverage.

  Returns:
    `t_interval` of the per-seed differences ablated[s] - baseline[s].
  """
  seeds = sorted(set(baseline) & set(ablated))
  return t_interval([ablated[s] - baseline[s] for s in seeds], confidence)


def verdict(interval: Interval, paper_sign: Optional[float]) -> str:
  """What an effect's interval says about the paper's claim, in one word or phrase.

  Args:
    interval: the effect's paired interval (`paired_difference`).
    paper_sign: the sign of the effect the paper reports (+1 or -1, any number of that sign), or None or 0
      where the paper states no direction.

  Returns:
    'too few seeds' (n < 2, or differences that agree exactly up to rounding: a zero spread from a few
    seeds of quantised errors is chance, and its zero-width interval says nothing); else 'not detected'
    (the interval includes 0); else 'measured' (no paper direction), 'confirmed' (0 excluded on the
    paper's side) or 'reversed' (on the other side).
  """
  if interval.n < 2 or interval.high - interval.low <= 1e-9 * max(1.0, abs(interval.mean)):  # up to rounding
    return "too few seeds"
  if not interval.excludes_zero():
    return "not detected"
  if not paper_sign:
    return "measured"
  return "confirmed" if math.copysign(1, interval.mean) == math.copysign(1, paper_sign) else "reversed"


def did_not_train(top1_error: float, num_classes: int) -> bool:
  """True when a final top-1 error is within reach of chance (see TRAINED_ACCURACY_OVER_CHANCE).

  Args:
    top1_error: the final top-1 error as a fraction in [0, 1].
    num_classes: the dataset's classes (chance error is 1 - 1 / num_classes).

  Returns:
    True when the error is not finite or above 1 - 1.5 / num_classes.
  """
  return not math.isfinite(top1_error) or top1_error > 1.0 - TRAINED_ACCURACY_OVER_CHANCE / num_classes
