"""How the study's report writes its numbers: intervals, per-seed lists, counts and verdicts as text.

One place for the report's number formats, so that every table, sentence and control writes an interval
or a seed list the same way (the tests match the report's text, and so do its readers).
"""

import math
from typing import Dict, Sequence

from alexnet_jax.analysis import effects
from experiments.study import measures

# What each claim's headline verdict reads (arms.Claim.measured_by), in words and in a table cell.
UNITS = {"error": "points of 10-crop top-1 error", "gap": "points of validation-training gap", "epochs": "epochs"}
MEASURE_NAMES = {"error": "10-crop top-1", "gap": "gap", "epochs": "epochs"}


def run_epochs(results: Sequence[dict]) -> str:
  """The epochs the runs trained for ('15', or '10-15' where they differ)."""
  lengths = sorted({r["summary"]["epochs"] for r in results})
  if not lengths:
    return "–"
  return f"{lengths[0]:g}" if len(lengths) == 1 else f"{lengths[0]:g}-{lengths[-1]:g}"


def fmt_interval(interval: effects.Interval, digits: int = 2) -> str:
  """'+1.23 [+0.45, +2.01]', '+1.23 (1 seed)' or '–' (no seed)."""
  if interval.n == 0:
    return "–"
  if interval.n < 2:
    return f"{interval.mean:+.{digits}f} (1 seed)"
  return f"{interval.mean:+.{digits}f} [{interval.low:+.{digits}f}, {interval.high:+.{digits}f}]"


def listed(items) -> str:
  """`items` (strings, at least one) in words: 'a', 'a and b', 'a, b and c'."""
  return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def count(n: int, noun: str) -> str:
  """'1 seed', '3 seeds'."""
  return f"{n} {noun}{'' if n == 1 else 's'}"


def fmt_seeds(seed_values: Dict[int, float], digits: int = 1, missing: str = "–") -> str:
  """The values in seed order, comma-separated; `missing` for a value that is not finite."""
  return ", ".join(f"{v:.{digits}f}" if math.isfinite(v) else missing for _, v in sorted(seed_values.items()))


def verdict_text(interval: effects.Interval, claim) -> str:
  """The claim's verdict on `interval`, with the effect a 'not detected' could still hide."""
  verdict = effects.verdict(interval, measures.paper_sign(claim))
  if verdict == "not detected":
    return f"not detected (could hide ±{interval.largest_hidden():.1f})"
  return verdict


def signed_or_dash(value: float) -> str:
  """'+1.23', or '–' where there is no value (a run that diverged before two evaluations has no trend)."""
  return f"{value:+.2f}" if math.isfinite(value) else "–"


def trained_cell(result) -> str:
  """'yes', 'no', or 'no (<why it stopped>)' for a run that non-finite losses stopped."""
  if not result["failed"]:
    return "yes"
  diverged = result["summary"].get("diverged")
  return f"no ({diverged})" if diverged else "no"
