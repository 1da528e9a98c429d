"""The study's measurements: its runs loaded from the report folder, and the statistics every part reads.

The report's tables, its prose, the controls and the budget comparison all read the same numbers (a
run's final errors, its epochs to a threshold, its overfitting gap, the seed-paired Δ of a claim), so
they are computed here, once, from the copied run files; the modules that word and draw them sit above
this one and never compute a statistic of their own.
"""

import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from alexnet_jax.analysis import ablate, effects, kernels, sweep

PRIMARY = "eval_ten_crop/top1_error"  # the paper's test protocol (section 4.1): the error verdicts read it
RESUMES_FILE = "resumes.json"  # in a copied run: the steps it resumed from (report_files.copy_finished)
CONVERGED_POINTS = 1.0  # a run is flat when its validation error's trend moved less than this over its last 20%


# ------------------------------------------------------------------------------------------ loading


def load_arm(report_dir: str, arm) -> List[dict]:
  """The finished seeds of an arm: ablate.read_run's fields plus 'failed', 'gap', 'kernels', 'summary' and
  'segments' (how many times the run started: from its clock's restarts or the resumes report_files.copy_finished
  noted, whichever saw more), its 'wall_time_s' counting every segment (wall_time)."""
  results = []
  for seed in range(arm.seeds):
    folder = os.path.join(report_dir, "runs", arm.name, f"seed{seed}")
    run = sweep.Run(arm.name, dict(arm.overrides), seed, folder)
    if not run.done:
      continue
    result = ablate.read_run(run)
    final = result["final"]
    result["failed"] = effects.did_not_train(final.get("eval/top1_error", math.nan), result["num_classes"])
    result["gap"] = 100 * (final.get("eval/top1_error", math.nan) - final.get("train_eval/top1_error", math.nan))
    path = os.path.join(folder, "conv1_kernels.npy")
    result["kernels"] = np.load(path) if os.path.exists(path) else None
    with open(run.summary_path) as f:
      summary = json.load(f)
    result["summary"] = summary
    result["wall_time_s"], restarts = wall_time(os.path.join(folder, "metrics.jsonl"), summary)
    # A trainer that restarted its clock at each resume shows the resumes both ways; one that carries it,
    # only in the resumes the log named.
    result["segments"] = max(restarts, 1 + len(resumed_from(folder)))
    results.append(result)
  return results


def wall_time(metrics_path: str, summary: dict) -> Tuple[float, int]:
  """A run's wall time over every segment of it, where it was interrupted and resumed.

  Where the trainer carried the wall time across a resume, summary.json's is the run's own; where it
  restarted its clock at each resume, metrics.jsonl shows that as a `perf/wall_time_s` smaller than the
  record before. A resume cuts metrics.jsonl back to the checkpoint it starts from, so
  each earlier segment counts up to its last perf record there (the work after it was lost and redone),
  and the final segment with summary.json's wall time (which includes the final evaluation).

  Args:
    metrics_path: the run's metrics.jsonl.
    summary: its summary.json (or diverged.json).

  Returns:
    (seconds, segments).
  """
  earlier, last = 0.0, None
  segments = 1
  with open(metrics_path) as f:
    for line in f:
      record = json.loads(line)
      if record.get("kind") != "perf":
        continue
      now = record["perf/wall_time_s"]
      if last is not None and now < last:  # the clock started again: a resumed segment
        earlier += last
        segments += 1
      last = now
  return earlier + summary["wall_time_s"], segments


def resumed_from(folder: str) -> List[int]:
  """The steps a copied run resumed from (RESUMES_FILE, written by report_files.copy_finished from the run's log:
  a trainer that carries its clock across a resume leaves no other trace); [] where there is no such file."""
  path = os.path.join(folder, RESUMES_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)["resumed_from_steps"]


def load_all(report_dir: str, arms) -> Dict[str, List[dict]]:
  """{arm name: its finished seeds (load_arm)} for every arm."""
  return {arm.name: load_arm(report_dir, arm) for arm in arms}


def values(results: Sequence[dict], key) -> Dict[int, float]:
  """{seed: value} over the runs that trained; `key` is a final metric (in points) or a function."""
  get = key if callable(key) else (lambda r: 100 * r["final"].get(key, math.nan))
  return {r["seed"]: get(r) for r in results if not r["failed"]}


def paired_delta(base: Sequence[dict], arm: Sequence[dict], key=PRIMARY) -> effects.Interval:
  """The seed-paired Δ of `key` (as for `values`), the runs of `arm` minus those of `base`, over the seeds
  both trained."""
  return effects.paired_difference(values(base, key), values(arm, key))


# ------------------------------------------------------------------------------------------ measures


def epochs_to(curve, threshold: float) -> float:
  """The first epoch at which a (epoch, error) curve is at or under `threshold`; inf if never."""
  return next((epoch for epoch, error in curve if error <= threshold), math.inf)


def speed_threshold(baseline: Sequence[dict], fraction: float = 0.25, curve: str = "train_curve") -> Optional[float]:
  """The error the baseline reaches on `curve` ('train_curve': training error as logged; 'curve':
  validation error), on the mean over its seeds, at `fraction` of its epochs: the level at which the
  epochs two nets need are compared (the paper used 25% on CIFAR-10, which ReLU reached at about a sixth
  of its run)."""
  curves = [r[curve] for r in baseline if not r["failed"] and r[curve]]
  if not curves:
    return None
  total = max(p[0] for p in curves[0])
  at = [min(c, key=lambda p: abs(p[0] - fraction * total))[1] for c in curves]
  return float(np.mean(at))


def at_fraction(curve, fraction: float) -> float:
  """A (epoch, error) curve's error at the record nearest `fraction` of its last epoch; NaN if empty."""
  if not curve:
    return math.nan
  total = curve[-1][0]
  return min(curve, key=lambda p: abs(p[0] - fraction * total))[1]


def late_fit(curve, fraction: float = 0.2) -> Tuple[float, float]:
  """The least-squares line through a run's validation errors over the last `fraction` of its epochs:
  (its value at the end minus at the window's start, the evaluations' standard deviation about it), in
  points. The line uses every evaluation in the window, so one evaluation's scatter moves it little."""
  if len(curve) < 2:
    return math.nan, math.nan
  start = (1 - fraction) * curve[-1][0]
  window = [p for p in curve if p[0] >= start]
  epochs, errors = np.array(window if len(window) >= 2 else curve[-2:], dtype=float).T
  slope, intercept = np.polyfit(epochs, errors, 1)
  scatter = np.std(errors - (slope * epochs + intercept), ddof=2) if len(epochs) > 2 else math.nan
  return 100 * slope * (epochs[-1] - epochs[0]), 100 * scatter


def late_change(curve, fraction: float = 0.2) -> float:
  """How much the validation error (points) moved over the last `fraction` of a run's epochs (late_fit)."""
  return late_fit(curve, fraction)[0]


def endpoint_change(curve, fraction: float = 0.2) -> float:
  """The two-evaluation version of late_change: the last error minus the one nearest the window's start."""
  if len(curve) < 2:
    return math.nan
  return 100 * (curve[-1][1] - at_fraction(curve, 1 - fraction))


def flat_counts(loaded, change=late_change) -> Tuple[int, int]:
  """(runs whose validation error moved less than CONVERGED_POINTS over their last 20% by `change`,
  runs that trained)."""
  changes = [change(r["curve"]) for rs in loaded.values() for r in rs if not r["failed"]]
  return sum(abs(c) < CONVERGED_POINTS for c in changes), len(changes)


def gap(result) -> float:
  """Validation minus training top-1 error at the end, in points (both scored as evaluation scores)."""
  return result["gap"]


def epochs_effect(base: Sequence[dict], arm: Sequence[dict], threshold: float, curve: str = "train_curve"):
  """Epochs to `threshold` on `curve` per seed of `arm` ('never' = inf), the paired Δ against the
  baseline with 'never' counted as the run's length (a lower bound), and the ratio of the mean epochs."""
  base_epochs = values(base, lambda r: epochs_to(r[curve], threshold))
  epochs = values(arm, lambda r: epochs_to(r[curve], threshold))
  length = {r["seed"]: r["summary"]["epochs"] for r in arm}
  bounded = {s: (e if math.isfinite(e) else length[s]) for s, e in epochs.items()}
  paired = [s for s in bounded if s in base_epochs]
  ratio = np.mean([bounded[s] for s in paired]) / np.mean([base_epochs[s] for s in paired]) if paired else math.nan
  return epochs, effects.paired_difference(base_epochs, bounded), ratio


def paper_sign(claim) -> float:
  """The direction the paper gives a claim's Δ: every claim says that removing (or replacing) the
  component makes things worse."""
  del claim
  return 1.0


def claim_effect(claim, loaded) -> effects.Interval:
  """The seed-paired Δ the claim's headline verdict reads (`claim.measured_by`)."""
  base, arm = loaded["baseline"], loaded[claim.arm]
  if claim.measured_by == "gap":
    return paired_delta(base, arm, gap)
  if claim.measured_by == "epochs":
    threshold = speed_threshold(base)
    return effects.t_interval([]) if threshold is None else epochs_effect(base, arm, threshold)[1]
  return paired_delta(base, arm)


def specialisation(kernel, towers: int = 2) -> Dict[str, float]:
  """Mean colour share (kernels.colour_share) of each half of conv1's kernels, the more colourful half
  first ('a'), and their difference: the paper's towers (figure 3), or two arbitrary halves as a control."""
  shares = [float(kernels.colour_share(h).mean()) for h in kernels.tower_halves(kernel, towers)]
  a, b = max(shares), min(shares)
  return {"a": a, "b": b, "difference": a - b}


def tower_differences(loaded) -> Dict[str, Dict[int, float]]:
  """{net: {seed: colour-share difference between its halves}} for the baseline and the one-tower control."""
  return {
    name: {
      r["seed"]: specialisation(r["kernels"])["difference"]
      for r in loaded.get(name, [])
      if r["kernels"] is not None and not r["failed"]
    }
    for name in ("baseline", "one_tower")
  }
