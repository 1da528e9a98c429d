"""Whether the study's findings replicate on a second dataset: Imagenette's findings beside Imagewoof's.

Imagewoof (ten dog breeds) is harder than Imagenette at the same size and format, and its arms were
declared before any of its runs: those of the findings the study's reading rests on. Per finding the
same seed-paired Δ on each dataset, and a rule fixed before the Imagewoof runs: a finding replicates when
Imagewoof's Δ goes the same way as Imagenette's (where Imagenette detected no effect: Imagewoof detects
none either) and its mean lies inside Imagenette's 95% interval. The findings that do not replicate are
listed first.
"""

import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

from alexnet_jax.analysis import effects
from experiments.study import arms as arms_lib
from experiments.study import controls
from experiments.study import formatting as fmt
from experiments.study import measures


@dataclasses.dataclass(frozen=True)
class Finding:
  """A finding of the study: arm `arm` against arm `versus` ('error': the 10-crop top-1 error, with the
  centre crop's beside; 'epochs': the epochs to the versus arm's quarter-mark training error), and the
  number of the paper's claim it tests (None for a control's reading)."""

  name: str
  arm: str
  versus: str
  measure: str = "error"
  claim: Optional[int] = None


FINDINGS = (
  Finding("claim 2: two towers (one_gpu_half - baseline)", "one_gpu_half", "baseline", claim=2),
  Finding("claim 3: LRN (no_lrn - baseline)", "no_lrn", "baseline", claim=3),
  Finding("claim 4: overlapping pooling (no_overlap - baseline)", "no_overlap", "baseline", claim=4),
  Finding("LRN as gain (no_lrn - lrn_gain_only)", "no_lrn", "lrn_gain_only"),
  Finding("towers as width (one_tower - baseline)", "one_tower", "baseline"),
  Finding("claim 1: ReLU against tanh (tanh - baseline)", "tanh", "baseline", "epochs", claim=1),
)


@dataclasses.dataclass(frozen=True)
class Replica:
  """The second dataset's study: its facts, arms, finished runs and folder (relative to the report)."""

  data: arms_lib.Data
  arms: Tuple[arms_lib.Arm, ...]
  loaded: Dict[str, List[dict]]
  where: str


def load(folder: str, report_dir: str, dataset: arms_lib.Dataset) -> Replica:
  """The second dataset's study from its report folder (its runs/), for the report in report_dir."""
  arms = arms_lib.arms_of(dataset)
  where = os.path.join(os.path.relpath(folder, report_dir), "runs")
  return Replica(dataset.data, arms, measures.load_all(folder, arms), where)


def effect(finding: Finding, loaded, key: str = measures.PRIMARY) -> effects.Interval:
  """The finding's seed-paired Δ in a study (`key`: the error metric, for the 'error' findings)."""
  if finding.measure == "epochs":
    versus = loaded.get(finding.versus, [])
    threshold = measures.speed_threshold(versus)
    if threshold is None:
      return effects.t_interval([])
    return measures.epochs_effect(versus, loaded.get(finding.arm, []), threshold)[1]
  return controls.paired(loaded, finding.versus, finding.arm, key)


def agreement(first: effects.Interval, second: effects.Interval) -> Tuple[Optional[bool], Optional[bool]]:
  """(same direction, inside the first's interval) of the second study's Δ; (None, None) where either
  has fewer than 2 seeds. Same direction: the means' signs agree where the first detected an effect, and
  where it did not, the second detects none either."""
  if min(first.n, second.n) < 2:
    return None, None
  if first.excludes_zero():
    direction = math.copysign(1, first.mean) == math.copysign(1, second.mean)
  else:
    direction = not second.excludes_zero()
  return direction, first.low <= second.mean <= first.high


def verdict(first: effects.Interval, second: effects.Interval) -> str:
  """'replicates', 'does not replicate' or 'too few seeds' (agreement's two tests, both needed)."""
  direction, inside = agreement(first, second)
  if direction is None:
    return "too few seeds"
  return "replicates" if direction and inside else "does not replicate"


def rows(loaded, replica: Replica) -> List[Tuple[str, Finding]]:
  """(verdict, finding) for the findings both datasets run, those that do not replicate first, then those
  with too few seeds, then those that replicate; FINDINGS order within each."""
  order = {"does not replicate": 0, "too few seeds": 1, "replicates": 2}
  run = [f for f in FINDINGS if all(n in loaded and n in replica.loaded for n in (f.arm, f.versus))]
  judged = [(verdict(effect(f, loaded), effect(f, replica.loaded)), f) for f in run]
  return sorted(judged, key=lambda pair: order[pair[0]])


def claim_cell(number: int, loaded, replica: Replica) -> str:
  """The README's cell for claim `number` on the second dataset: its Δ and verdict ('+2.0 [+1.5, +2.5],
  replicates'), 'no run yet' before a run of its arm has finished, or '–' where that dataset does not test
  the claim."""
  finding = next((f for f in FINDINGS if f.claim == number), None)
  if finding is None or not all(n in replica.loaded for n in (finding.arm, finding.versus)):
    return "–"
  first, second = effect(finding, loaded), effect(finding, replica.loaded)
  if not second.n:
    return "no run yet"
  unit = " epochs" if finding.measure == "epochs" else ""
  judged = verdict(first, second)
  if judged == "does not replicate":
    judged += f" ({why_not(first, second)})"
  return f"{fmt.fmt_interval(second, 1)}{unit}, {judged}"


def why_not(first: effects.Interval, second: effects.Interval) -> str:
  """Which of agreement's tests a finding that does not replicate fails: where the second mean lies against
  the first interval, or how its direction differs."""
  direction, _ = agreement(first, second)
  if not direction:
    return "the other direction" if first.excludes_zero() else "an effect where none was detected here"
  return "above the interval here" if second.mean > first.high else "below the interval here"


def yes_no(value: Optional[bool]) -> str:
  """'yes', 'no', or '–' where there is nothing to judge."""
  return "–" if value is None else ("yes" if value else "no")


def inside_cell(first: effects.Interval, second: effects.Interval) -> str:
  """The table's 'inside' cell: yes, '–', or where the second mean lies: 'no, above' or 'no, below'."""
  inside = agreement(first, second)[1]
  if inside is None or inside:
    return yes_no(inside)
  return "no, above" if second.mean > first.high else "no, below"


def outside_reading(loaded, replica: Replica, data: arms_lib.Data) -> str:
  """A line under the table on the findings that go the same way but miss only the interval test: how many
  lie above it and how many of their intervals still hold the first study's mean; '' for none. The rule
  stays as fixed before the runs; this says what its failures are made of."""
  missed = []
  for v, f in rows(loaded, replica):
    first, second = effect(f, loaded), effect(f, replica.loaded)
    if v == "does not replicate" and agreement(first, second)[0]:
      missed.append((f, first, second))
  if not missed:
    return ""
  above = [f for f, first, second in missed if second.mean > first.high]
  holding = [f for f, first, second in missed if second.low <= first.mean <= second.high]
  a, b = data.short, replica.data.short
  return (
    f"Reading: {len(missed)} of the findings that do not replicate go the same way as on {a} and miss only "
    f"its interval, {len(above)} of them above it (a larger Δ, positive being the paper's direction); "
    f"{len(holding)} of these {len(missed)} {b} intervals still hold {a}'s mean, where {b}'s seeds cannot "
    f"tell a larger effect from the same one."
  )


def progress(replica: Replica) -> Tuple[int, int]:
  """The second study's finished runs and the runs it declares."""
  return sum(len(runs) for runs in replica.loaded.values()), sum(a.seeds for a in replica.arms)


def section(loaded, replica: Replica, data: arms_lib.Data) -> List[str]:
  """The replication section: each finding's Δ on both datasets and whether it replicates.

  Args:
    loaded: {arm name: its finished runs} of this report's study.
    replica: the second dataset's study.
    data: this report's dataset's facts.

  Returns:
    The section's Markdown lines.
  """
  lines = [f"## Replication on {replica.data.short}", ""]
  done, planned = progress(replica)
  if not done:
    return lines + [f"No {replica.data.short} run has finished yet (`{replica.where}`).", ""]
  a, b = data.short, replica.data.short
  lines += [
    f"{b} ({replica.data.content}, {done} of {planned} runs in `{replica.where}`) against {a}: each finding's "
    f"seed-paired Δ, mean [95% t interval], in points of top-1 error (10-crop, and centre beside it) or in "
    f"epochs. Rule, fixed before the {b} runs: a finding replicates when {b}'s Δ goes the same way as "
    f"{a}'s (where {a} detected no effect, {b} detects none either) and its mean lies inside {a}'s "
    f"interval. Those that do not replicate come first.",
    "",
    f"| finding | {a} Δ | {b} Δ | centre: {a} | centre: {b} | same direction | inside {a}'s interval | replicates |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for verdict_, finding in rows(loaded, replica):
    first, second = effect(finding, loaded), effect(finding, replica.loaded)
    direction = agreement(first, second)[0]
    centre = ["–", "–"]
    if finding.measure == "error":
      centre = [fmt.fmt_interval(effect(finding, s, "eval/top1_error")) for s in (loaded, replica.loaded)]
    unit = " epochs" if finding.measure == "epochs" else ""
    lines.append(
      f"| {finding.name} | {fmt.fmt_interval(first)}{unit} | {fmt.fmt_interval(second)}{unit} | {centre[0]} | "
      f"{centre[1]} | {yes_no(direction)} | {inside_cell(first, second)} | {verdict_} |"
    )
  reading = outside_reading(loaded, replica, data)
  return lines + [""] + ([reading, ""] if reading else [])


def sentence(loaded, replica: Replica, brief: bool = False) -> str:
  """How many findings replicate, naming those that do not, and how many of the second study's runs that
  rests on while some are missing; '' before any can be judged. For the headline with the rule in brackets;
  `brief`, for the README beside its claims column: without the rule (its preamble states it), naming only
  the failures the column leaves out (the controls' readings)."""
  judged: Sequence[Tuple[str, Finding]] = [r for r in rows(loaded, replica) if r[0] != "too few seeds"]
  if not judged:
    return ""
  failed = [f for v, f in judged if v == "does not replicate"]
  done, planned = progress(replica)
  partial = f", with {done} of its {planned} runs," if done < planned else ","
  text = f"On {replica.data.short}{partial} {len(judged) - len(failed)} of the {len(judged)} findings judged replicate"
  if not brief:
    text += " (same direction, inside this study's interval)"
  named = [f.name.split(" (")[0] for f in failed if not (brief and f.claim is not None)]
  if not named:
    return text + "."
  return text + ("; besides the claims above, not: " if brief else "; not: ") + ", ".join(named) + "."
