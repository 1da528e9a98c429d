"""How the study's results move with its training budget: the same arms and seeds run for two numbers of
epochs (two report folders of the study), compared seed by seed.

A cosine schedule ends every run on small steps, so a run's own curve is a weak test of convergence;
the budget test asks what a convergence criterion is for: would more training change the answer? Per arm,
the seed-paired change of the 10-crop top-1 error when the budget grows; per claim, the seed-paired
change of its Δ (the arm's difference from the baseline at the longer budget minus the same seed's at
the shorter one). An effect that is a training-speed artefact shrinks as the budget grows.
"""

import math
import os
from typing import Dict, List, Sequence, Tuple

from alexnet_jax.analysis import ablate, effects, plots, sweep
from experiments.study import figures
from experiments.study import formatting as fmt
from experiments.study import measures


SETTLED_POINTS = measures.CONVERGED_POINTS  # an arm is settled when its error moves less than this


def epochs_of(loaded) -> float:
  """The baseline's number of epochs in a loaded study (NaN when its baseline has no finished run)."""
  base = loaded.get("baseline") or []
  return base[0]["summary"]["config"]["num_epochs"] if base else math.nan


def config_differences(short, long) -> List[str]:
  """'key: short value -> long value' (alexnet_jax.analysis.sweep's) for the config keys, other than the budget and
  the seed, where the two studies' baselines (their first finished seed) differ: what else changed."""
  if not short.get("baseline") or not long.get("baseline"):
    return []
  a, b = (dict(s["baseline"][0]["summary"]["config"]) for s in (short, long))
  for config in (a, b):
    config.pop("num_epochs", None), config.pop("seed", None)
  return sweep.config_differences(a, b)


def measure(claim):
  """What the budget table reads of a claim: its gap for the overfitting claims, else the 10-crop top-1."""
  return measures.gap if claim.measured_by == "gap" else measures.PRIMARY


def arm_errors(
  short: Sequence[dict], long: Sequence[dict], key: str = measures.PRIMARY
) -> Tuple[Dict[int, float], Dict[int, float]]:
  """An arm's error `key` (10-crop top-1 unless named; points) per seed at each budget, over the seeds both
  budgets trained."""
  a, b = measures.values(short, key), measures.values(long, key)
  seeds = set(a) & set(b)
  return {s: a[s] for s in seeds}, {s: b[s] for s in seeds}


def arm_change(short: Sequence[dict], long: Sequence[dict]) -> effects.Interval:
  """Seed-paired change (long minus short) of an arm's 10-crop top-1 error, in points."""
  return effects.paired_difference(*arm_errors(short, long))


def seed_deltas(loaded, arm: str, key) -> Dict[int, float]:
  """{seed: the arm's value minus the same seed's baseline value} over the seeds both trained."""
  base, other = measures.values(loaded["baseline"], key), measures.values(loaded[arm], key)
  return {s: other[s] - base[s] for s in base if s in other}


def effect_change(claim, short, long) -> Tuple[effects.Interval, effects.Interval, effects.Interval]:
  """The claim's Δ at each budget and its seed-paired change, all over the seeds both budgets have."""
  a, b = (seed_deltas(s, claim.arm, measure(claim)) for s in (short, long))
  seeds = sorted(set(a) & set(b))
  at = lambda d: effects.t_interval([d[s] for s in seeds])
  return at(a), at(b), effects.paired_difference({s: a[s] for s in seeds}, {s: b[s] for s in seeds})


def settled(change: effects.Interval) -> str:
  """'yes' when the interval lies inside ±SETTLED_POINTS, 'no' when it lies outside, else 'open'."""
  if change.n < 2:
    return "one seed" if change.n else "–"
  if -SETTLED_POINTS < change.low and change.high < SETTLED_POINTS:
    return "yes"
  return "no" if change.high <= -SETTLED_POINTS or change.low >= SETTLED_POINTS else "open"


def ordered(loaded, other) -> Tuple[dict, dict]:
  """(the shorter study, the longer study)."""
  return (other, loaded) if epochs_of(other) <= epochs_of(loaded) else (loaded, other)


def section(arms, claims, loaded, other, other_name: str) -> List[str]:
  """The report's budget section: this study against `other` (another report folder's runs)."""
  short, long = ordered(loaded, other)
  e_short, e_long = epochs_of(short), epochs_of(long)
  lines = [
    "## Budget: does more training change the answer?",
    "",
    f"The same arms and seeds at {e_short:g} and {e_long:g} epochs (the other study: `{other_name}`). "
    f"Change: the {e_long:g}-epoch value minus the same seed's {e_short:g}-epoch value, seed-paired, mean "
    f"[95% t interval], over the seeds both budgets trained. An arm had settled at {e_short:g} epochs when its "
    f"change lies inside ±{SETTLED_POINTS:g} point (*open*: the interval straddles that bound); whether the "
    f"{e_long:g}-epoch runs are flat is the Convergence section's question.",
    "",
  ]
  differing = config_differences(short, long)
  if differing:
    lines += [f"Besides the epochs the two studies' configs differ in: {'; '.join(f'`{d}`' for d in differing)}.", ""]
  lines += [
    f"| arm | 10-crop top-1 at {e_short:g} (paired seeds' mean) | at {e_long:g} | change | settled at {e_short:g} "
    f"| centre top-1 at {e_short:g} | at {e_long:g} | change (centre) |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for arm in arms:
    errors = arm_errors(short[arm.name], long[arm.name])
    change = effects.paired_difference(*errors)
    if change.n:
      mean_short, mean_long = (sum(e.values()) / len(e) for e in errors)
      centre = arm_errors(short[arm.name], long[arm.name], "eval/top1_error")
      centre_short, centre_long = (sum(e.values()) / len(e) for e in centre)
      lines.append(
        f"| {arm.name} | {mean_short:.2f} | {mean_long:.2f} | {fmt.fmt_interval(change)} | {settled(change)} | "
        f"{centre_short:.2f} | {centre_long:.2f} | {fmt.fmt_interval(effects.paired_difference(*centre))} |"
      )
  lines += ending_lines(arms, short, long)
  lines += [
    f"| claim | measure | Δ at {e_short:g} | Δ at {e_long:g} | change of Δ | verdict at {e_short:g} | at {e_long:g} |",
    "|---|---|---|---|---|---|---|",
  ]
  for claim in claims:
    a, b, change = effect_change(claim, short, long)
    if change.n:
      name = "gap" if claim.measured_by == "gap" else "10-crop top-1"
      verdicts = [effects.verdict(x, measures.paper_sign(claim)) for x in (a, b)]
      lines.append(
        f"| {claim.number} ({claim.topic}) | {name} | {fmt.fmt_interval(a)} | {fmt.fmt_interval(b)} | "
        f"{fmt.fmt_interval(change)} | {verdicts[0]} | {verdicts[1]} |"
      )
  return lines + [
    "",
    "![validation error per epoch at both budgets, the paired seeds' mean and range](budget_curves.png)",
    "",
  ]


def ending_lines(arms, short, long) -> List[str]:
  """What the shorter schedule's last, small steps bought: per arm, the shorter run's final validation
  error (centre) against the longer run's at the same epoch, where its learning rate was still high."""
  fraction = epochs_of(short) / epochs_of(long)
  lines = [
    "",
    f"What the {epochs_of(short):g}-epoch schedule's ending bought: validation top-1 error (centre, points) at "
    f"epoch {epochs_of(short):g} of both runs of a seed (gain: the longer run's minus the shorter's, "
    f"seed-paired; single evaluations, which move by a point or more from one epoch to the next).",
    "",
    f"| arm | {epochs_of(short):g}-epoch run's end | {epochs_of(long):g}-epoch run at epoch {epochs_of(short):g} "
    f"| gain of the ending | {epochs_of(long):g}-epoch run's end |",
    "|---|---|---|---|---|",
  ]
  for arm in arms:
    at = lambda study, f: measures.values(study[arm.name], lambda r: 100 * measures.at_fraction(r["curve"], f))
    ended, midway, final = at(short, 1.0), at(long, fraction), at(long, 1.0)
    seeds = sorted(set(ended) & set(midway))
    if seeds:
      mean = lambda d: sum(d[s] for s in seeds) / len(seeds)
      gain = effects.paired_difference({s: ended[s] for s in seeds}, {s: midway[s] for s in seeds})
      lines.append(
        f"| {arm.name} | {mean(ended):.2f} | {mean(midway):.2f} | {fmt.fmt_interval(gain)} | {mean(final):.2f} |"
      )
  return lines + [""]


def paired_arms(arms, short, long) -> List[str]:
  """The arms with at least one seed trained at both budgets."""
  return [a.name for a in arms if arm_change(short[a.name], long[a.name]).n]


def plot(report_dir: str, arms, loaded, other) -> None:
  """budget_curves.png: per arm with paired seeds, its validation error per epoch at each budget (the
  paired seeds' mean and range): whether the longer run is still falling where the shorter one ended."""
  plt = plots.pyplot()

  short, long = ordered(loaded, other)
  names = paired_arms(arms, short, long)
  if not names:
    return

  def budget_panel(ax, name):
    seeds = set(arm_errors(short[name], long[name])[0])
    for study in (short, long):
      curves = [r["curve"] for r in study[name] if r["seed"] in seeds]
      ablate.plot_curves(ax, [{"config": f"{epochs_of(study):g} epochs", "_curves": curves}])
    ax.set_title(f"{name} ({fmt.count(len(seeds), 'seed')})", fontsize=9)
    ax.legend(fontsize=7)

  figures.save_curve_panels(plt, os.path.join(report_dir, "budget_curves.png"), names, budget_panel)


def sentence(loaded, other) -> str:
  """One sentence for the headline: how far the baseline's error moved between the budgets."""
  short, long = ordered(loaded, other)
  change = arm_change(short["baseline"], long["baseline"])
  if not change.n:
    return ""
  shorter = f"the {epochs_of(short):g}-epoch error"
  state = {
    "yes": f"; {shorter} had settled (inside ±{SETTLED_POINTS:g} point)",
    "no": f"; {shorter} had not settled (the interval lies beyond ±{SETTLED_POINTS:g} point)",
    "open": f"; whether {shorter} had settled within ±{SETTLED_POINTS:g} point is open",
  }.get(settled(change), "")
  return (
    f"From {epochs_of(short):g} to {epochs_of(long):g} epochs the baseline's 10-crop top-1 error changed by "
    f"{fmt.fmt_interval(change, 1)} points{state}."
  )
