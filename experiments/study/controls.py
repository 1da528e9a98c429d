"""What each effect is: the study's controls, read against the claims they control (experiments/study/arms.py).

A claim with an obvious confound has control arms: LRN's (a net without LRN also runs at another scale,
which interacts with the learning rate; lrn.py), the towers' (the paper's one-GPU net has half the kernels:
width as well as the split) and dropout's (it changes the effective step size, which bears on its cost in
epochs). Each section tabulates the arms' seed-paired Δ against the baseline, and a pure function of
those intervals states which reading they support (tested on hand-made intervals). A dataset that does not
run a control's arms has no section for it.
"""

from typing import List, Optional, Sequence

from alexnet_jax.analysis import effects
from experiments.study import formatting as fmt
from experiments.study import measures


# Each control arm, beside the arm it controls: LRN's (lrn.py reads them), the towers', dropout's.
LRN_CONTROLS = ("lrn_gain_only", "lrn_k1", "no_lrn_lr_half", "no_lrn_lr_double")
TOWER_CONTROLS = ("one_tower",)
DROPOUT_CONTROLS = ("no_dropout_lr_half",)
DEPARTURE_CONTROLS = ("dropout_paper",)  # read by the departures table (recipe.py)
CONTROLS = LRN_CONTROLS + TOWER_CONTROLS + DROPOUT_CONTROLS + DEPARTURE_CONTROLS
TOP1_KEYS = (measures.PRIMARY, "eval/top1_error")  # every Δ of an error: 10-crop, and centre beside it


def runs_any(loaded, *names: str) -> bool:
  """Whether the dataset runs any of the arms `names` (loaded holds every arm it runs, finished or not)."""
  return any(name in loaded for name in names)


def paired(loaded, versus: str, name: str, key=measures.PRIMARY) -> effects.Interval:
  """The seed-paired Δ of `key` (a final metric or a function of a run, values), arm `name` minus
  arm `versus`, over the seeds both trained."""
  return measures.paired_delta(loaded.get(versus, []), loaded.get(name, []), key)


def trained_of(loaded, name: str) -> str:
  """'2 of 3': an arm's runs that trained, of those that finished."""
  runs = loaded.get(name, [])
  return f"{sum(not r['failed'] for r in runs)} of {len(runs)}"


def delta_row(loaded, name: str, extra: Sequence[str] = ()) -> str:
  """A table row: the arm, any `extra` cells, its seeds trained, and its seed-paired Δ of the 10-crop and
  the centre top-1 error against the baseline."""
  deltas = [fmt.fmt_interval(paired(loaded, "baseline", name, key)) for key in TOP1_KEYS]
  return "| " + " | ".join([name, *extra, trained_of(loaded, name), *deltas]) + " |"


def towers_section(loaded) -> List[str]:
  """The towers' control section: the one-GPU and one-tower nets against the towers, and the reading.

  Args:
    loaded: {arm name: its finished runs} (measures.load_all).

  Returns:
    The section's Markdown lines; none where the dataset runs neither net.
  """
  if not runs_any(loaded, "one_gpu_half", *TOWER_CONTROLS):
    return []
  params = lambda name: next((f"{r['summary']['parameters']:,}" for r in loaded.get(name, [])), "–")
  lines = [
    "## What the towers' effect is: width or the split (claim 2's control)",
    "",
    "The paper's one-GPU net has half the kernels in conv1-conv4 (footnote 2), so it differs from the "
    "two-tower net in width as well as in the split into towers. The control: the one-tower net, the "
    "towers' widths with every layer connected to all channels (the split undone, nothing narrowed).",
    "",
    "| arm | parameters | seeds trained | Δ top-1 (10-crop) vs baseline | Δ top-1 (centre) |",
    "|---|---|---|---|---|",
  ]
  lines.append(f"| baseline | {params('baseline')} | {trained_of(loaded, 'baseline')} | – | – |")
  lines += [delta_row(loaded, name, [params(name)]) for name in ("one_gpu_half", *TOWER_CONTROLS) if name in loaded]
  return lines + ["", "Reading: " + tower_reading(*tower_intervals(loaded)), ""]


def tower_intervals(loaded):
  """tower_reading's intervals: the half-width one-GPU net and the one-tower net against the towers, and
  the one-tower net against the half-width one."""
  return (
    paired(loaded, "baseline", "one_gpu_half"),
    paired(loaded, "baseline", "one_tower"),
    paired(loaded, "one_gpu_half", "one_tower"),
  )


def tower_reading(half: effects.Interval, whole: effects.Interval, whole_vs_half: effects.Interval) -> str:
  """Which account of claim 2 the control supports, from seed-paired intervals of the 10-crop top-1
  error: the paper's half-width one-GPU net (`half`) and the one-tower net of the towers' width (`whole`),
  each minus the two-tower baseline (positive: worse than the towers), and the one-tower net minus the
  half-width one (`whole_vs_half`). Width needs its own evidence: the one-tower net detectably better
  than the half-width net, not merely no difference from the towers detected."""
  if min(half.n, whole.n, whole_vs_half.n) < 2:
    return "too few seeds yet to tell width from the split."
  if not half.excludes_zero():
    return (
      f"no difference between the towers and the half-width one-GPU net was detected (it could hide "
      f"±{half.largest_hidden():.1f}), so there is no edge to attribute yet."
    )
  if half.mean < 0:
    return "the half-width one-GPU net beats the towers: the paper's comparison is reversed here."
  if whole.excludes_zero():
    if whole.mean > 0:
      return "the towers beat even the one-tower net of their width: the split itself helps, beyond width."
    return (
      "the one-tower net of the towers' width beats the towers: their edge over the half-width net is "
      "width, and the split itself costs accuracy."
    )
  if whole_vs_half.excludes_zero() and whole_vs_half.mean < 0:
    return (
      f"the one-tower net of the towers' width also beats the half-width net, and no difference from the "
      f"towers was detected (it could hide ±{whole.largest_hidden():.1f}): the towers' edge is width, not "
      f"the split."
    )
  return "the controls do not separate width from the split at these seeds."


def dropout_section(loaded) -> List[str]:
  """Dropout's control section: the epochs to the validation threshold without dropout, at the baseline's
  learning rate and at half of it, and the reading.

  Args:
    loaded: {arm name: its finished runs} (measures.load_all).

  Returns:
    The section's Markdown lines; none before a baseline run has finished, or where the dataset does
    not run the arms.
  """
  threshold = measures.speed_threshold(loaded["baseline"], curve="curve")
  if threshold is None or not runs_any(loaded, "no_dropout", *DROPOUT_CONTROLS):
    return []
  lines = [
    "## What dropout's cost in epochs is: the step size (claim 7's control)",
    "",
    "Dropout also changes the effective step size (each step trains the fully connected layers through "
    "half of their units), so a net without it may converge sooner only because its steps are larger. "
    "The control: no dropout at half the baseline's learning rate. Epochs to a validation top-1 error "
    f"(centre) of {100 * threshold:.1f}%, as in 'Epochs to converge'; Δ: the arm minus the baseline, "
    "seed-paired ('never' counts as the run's length); Δ gap: validation minus training error.",
    "",
    "| arm | seeds trained | epochs per seed | Δ epochs | Δ gap | Δ top-1 (10-crop) | Δ top-1 (centre) |",
    "|---|---|---|---|---|---|---|",
  ]
  for name in ("no_dropout", *DROPOUT_CONTROLS):
    per_seed, delta, _ = measures.epochs_effect(loaded["baseline"], loaded.get(name, []), threshold, curve="curve")
    cells = [fmt.fmt_interval(paired(loaded, "baseline", name, k)) for k in (measures.gap, *TOP1_KEYS)]
    lines.append(
      f"| {name} | {trained_of(loaded, name)} | {fmt.fmt_seeds(per_seed, 2, 'never') or '–'} | "
      f"{fmt.fmt_interval(delta)} | " + " | ".join(cells) + " |"
    )
  return lines + ["", "Reading: " + dropout_reading(*dropout_intervals(loaded, threshold)), ""]


def dropout_intervals(loaded, threshold: Optional[float]):
  """dropout_reading's intervals of the epochs to the validation `threshold`: no dropout and no dropout
  at half the learning rate, each against the baseline, and the second against the first."""
  if threshold is None:
    return (effects.t_interval([]),) * 3
  at = lambda versus, name: measures.epochs_effect(
    loaded.get(versus, []), loaded.get(name, []), threshold, curve="curve"
  )[1]
  (control,) = DROPOUT_CONTROLS
  return at("baseline", "no_dropout"), at("baseline", control), at("no_dropout", control)


def dropout_reading(no_dropout: effects.Interval, half_step: effects.Interval, half_vs_full: effects.Interval) -> str:
  """Which account of dropout's cost in epochs the control supports, from seed-paired intervals of the
  epochs to a validation error: the net without dropout at the baseline's learning rate (`no_dropout`)
  and at half of it (`half_step`), each minus the baseline (negative: sooner), and the second minus the
  first (`half_vs_full`). The step-size account needs its own evidence: the half step detectably slower
  than the full one, not merely no longer detectably sooner than the baseline."""
  if min(no_dropout.n, half_step.n, half_vs_full.n) < 2:
    return "too few seeds yet to tell a slower net from a smaller step."
  if not (no_dropout.excludes_zero() and no_dropout.mean < 0):
    return "the net without dropout was not detected to converge sooner, so there is no cost in epochs to attribute."
  if half_step.excludes_zero() and half_step.mean < 0:
    return (
      "without dropout the net gets there sooner even at half the learning rate: dropout's cost in epochs "
      "is not a matter of step size."
    )
  if half_vs_full.excludes_zero() and half_vs_full.mean > 0 and not half_step.excludes_zero():
    return (
      f"halving the step slows the net without dropout detectably ({fmt.fmt_interval(half_vs_full)} "
      f"epochs), back to no detectable difference from the baseline: the step size can account for "
      f"dropout's cost in epochs."
    )
  return (
    f"the control does not separate the accounts at these seeds (without dropout at half the learning "
    f"rate: {fmt.fmt_interval(half_step)} epochs against the baseline, {fmt.fmt_interval(half_vs_full)} "
    f"against the full step)."
  )
