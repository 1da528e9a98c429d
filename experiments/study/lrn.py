"""What the LRN effect is: the LRN controls, read against the net without LRN.

LRN divides each activation by (k + α Σ x²)^β (α on the plain sum, section 3.3). Removing it also removes the
constant part of that division, the gain 1 / k^β (1 / 2^0.75 ≈ 0.59 at the paper's k = 2), so a net without
LRN also runs at another scale. The controls: the gain alone (α = 0), the net without LRN at other learning
rates, and LRN with k = 1 (Caffe's default, and Mishkin et al.'s k), whose gain is 1 / 1^0.75 = 1: the
normalisation without the gain. The readings are pure functions of seed-paired intervals, with rules fixed
before the runs they read (tested on hand-made intervals).
"""

import math
from typing import List

from alexnet_jax.analysis import effects
from experiments.study import controls
from experiments.study import formatting as fmt

# Each LRN control in words, for the section's introduction (where the dataset runs it).
CONTROL_WORDS = {
  "lrn_gain_only": "LRN's constant gain alone (α = 0)",
  "lrn_k1": "LRN with k = 1 (the normalisation without the gain)",
  "no_lrn_lr_half": "the net without LRN at half the baseline's learning rate",
  "no_lrn_lr_double": "the net without LRN at twice the baseline's learning rate",
}

# What removing LRN did elsewhere, with the k of the LRN removed: (net and source, k, Δ error without LRN).
LRN_ANCHORS = (
  ("AlexNet on ImageNet (the paper, section 3.3)", 2, "+1.4 top-1, +1.2 top-5"),
  (
    "CaffeNet at 128 px on ImageNet (Mishkin, Sergievskiy & Matas 2016; caffenet128_lsuv.prototxt of "
    "ducha-aiki/caffenet-benchmark)",
    1,
    "-0.1 top-1 (accuracy 0.470 with LRN, 0.471 without)",
  ),
  (
    "VGG A on ImageNet (Simonyan & Zisserman 2015, table 3; Krizhevsky et al.'s LRN constants)",
    2,
    "-0.1 top-1, -0.1 top-5 (A 29.6 / 10.4, A-LRN 29.7 / 10.5)",
  ),
)

# How Mishkin et al.'s LRN differs from lrn_k1 (caffenet128_lsuv.prototxt: local_size 5, alpha 0.0001,
# beta 0.75, k left at Caffe's 1; Caffe divides alpha by local_size).
K1_ANCHOR_CAVEAT = (
  "Mishkin et al.'s LRN is not lrn_k1 exactly: Caffe divides α by the window (n = 5), so their α on the plain "
  "sum is 2e-5, a fifth of the paper's 1e-4 that lrn_k1 keeps, and CaffeNet normalises after pooling, not "
  "before it. Their LRN is nearer still to the identity than lrn_k1, so the gain reading predicts no effect "
  "from it either; this study did not run their exact setting."
)

K1_RULE = (
  "Rule for LRN with k = 1: if LRN's effect is its constant gain, LRN with k = 1 (gain 1) does no better "
  "than no LRN. As for the other controls, a reading names an account only on evidence for it (the rule's "
  "first wording, declared before any run, read 'fails' wherever lrn_k1 was not detectably worse than the "
  "baseline; it was brought in line with that principle when the first two seeds gave an interval too wide "
  "to tell anything apart). The gain reading holds if lrn_k1 is detectably worse than the baseline and not detectably "
  "better than no_lrn; it fails if lrn_k1 is detectably better than no_lrn and not detectably worse than the "
  "baseline; where lrn_k1 is detectably worse than the baseline and detectably better than no_lrn, the gain is "
  "part of the effect, not all of it; otherwise the control does not separate the two accounts. It reads only "
  "where removing LRN has a detected effect."
)


def lrn_section(loaded) -> List[str]:
  """The LRN controls' section: each LRN arm's Δ against the baseline, LRN with k = 1 beside later work's
  k, and the readings.

  Args:
    loaded: {arm name: its finished runs} (measures.load_all).

  Returns:
    The section's Markdown lines; none where the dataset does not run the net without LRN.
  """
  if "no_lrn" not in loaded:
    return []
  run = [name for name in controls.LRN_CONTROLS if name in loaded]
  lines = [
    "## What the LRN effect is: the controls",
    "",
    "Removing LRN also removes its constant gain: every activation it passes is divided by at least "
    "k^β = 2^0.75 ≈ 1.68, so the net without it runs at another scale, which interacts with the "
    "learning rate and the initialisation. The controls: " + words(run) + ".",
    "",
    "| arm | seeds trained | Δ top-1 (10-crop) vs baseline | Δ top-1 (centre) |",
    "|---|---|---|---|",
  ]
  lines += [controls.delta_row(loaded, name) for name in ("no_lrn", *run)]
  no_lrn, gain_only, gain_alone = lrn_intervals(loaded)
  lines += [
    "",
    f"The gain's own effect (no_lrn minus lrn_gain_only, seed-paired): {fmt.fmt_interval(gain_alone)}.",
    "",
    "Reading: " + lrn_reading(no_lrn, gain_only, gain_alone),
    "",
  ]
  return lines + (k1_lines(loaded) if "lrn_k1" in loaded else [])


def words(names) -> str:
  """The controls `names` in words: 'a', 'a and b', 'a, b and c'."""
  return fmt.listed([CONTROL_WORDS[n] for n in names])


def k1_lines(loaded) -> List[str]:
  """LRN with k = 1: removing LRN here and elsewhere with the k of the LRN removed, lrn_k1's Δ against the
  baseline and against no LRN, and the reading by K1_RULE."""
  intervals = k1_intervals(loaded)
  removed = [
    controls.paired(loaded, versus, "no_lrn", key) for versus in ("baseline", "lrn_k1") for key in controls.TOP1_KEYS
  ]
  lines = [
    "### LRN with k = 1",
    "",
    "Removing LRN, by the k of the LRN removed. Δ: the error without LRN minus the error with it, in points "
    "(this study: seed-paired, mean [95% t interval], 10-crop / centre top-1).",
    "",
    "| net (source) | k | Δ without LRN |",
    "|---|---|---|",
  ]
  lines += [f"| {net} | {k} | {effect} |" for net, k, effect in LRN_ANCHORS]
  both = lambda i: f"{fmt.fmt_interval(removed[i])} / {fmt.fmt_interval(removed[i + 1])}"
  lines += [
    f"| this study: no_lrn against the baseline | 2 | {both(0)} |",
    f"| this study: no_lrn against lrn_k1 | 1 | {both(2)} |",
    "",
    "| arm | seeds trained | Δ top-1 (10-crop) vs baseline | Δ top-1 (centre) | Δ top-1 (10-crop) vs no_lrn "
    "| Δ top-1 (centre) |",
    "|---|---|---|---|---|---|",
  ]
  cells = [
    controls.paired(loaded, versus, "lrn_k1", key) for versus in ("baseline", "no_lrn") for key in controls.TOP1_KEYS
  ]
  lines.append(
    f"| lrn_k1 | {controls.trained_of(loaded, 'lrn_k1')} | " + " | ".join(fmt.fmt_interval(c) for c in cells) + " |"
  )
  return lines + ["", K1_ANCHOR_CAVEAT, "", K1_RULE, "", "Reading: " + k1_reading(*intervals), ""]


def lrn_intervals(loaded):
  """lrn_reading's three intervals of the 10-crop top-1 error: no LRN and LRN's gain alone, each against
  the baseline, and no LRN against the gain alone."""
  return (
    controls.paired(loaded, "baseline", "no_lrn"),
    controls.paired(loaded, "baseline", "lrn_gain_only"),
    controls.paired(loaded, "lrn_gain_only", "no_lrn"),
  )


def lrn_reading(no_lrn: effects.Interval, gain_only: effects.Interval, gain_alone: effects.Interval) -> str:
  """Which account of the LRN effect the controls support, from three seed-paired intervals of the
  10-crop top-1 error: no LRN vs the baseline, LRN's gain without its normalisation (alpha = 0) vs the
  baseline (what the normalisation buys), and no LRN vs the gain alone (what the gain buys)."""
  if min(no_lrn.n, gain_only.n, gain_alone.n) < 2:
    return "too few seeds yet to tell the accounts apart."
  if not no_lrn.excludes_zero():
    return (
      f"no effect of removing LRN was detected (it could hide ±{no_lrn.largest_hidden():.1f}), so there "
      f"is nothing to attribute yet."
    )
  same_side = lambda i: i.excludes_zero() and math.copysign(1, i.mean) == math.copysign(1, no_lrn.mean)
  if same_side(gain_only) and not gain_alone.excludes_zero():
    return (
      "the net that keeps LRN's constant gain but not its normalisation loses what removing LRN loses, "
      "and the gain alone buys nothing detectable: the effect is the normalisation across channels, not "
      "the scale."
    )
  if not gain_only.excludes_zero() and same_side(gain_alone):
    return (
      f"LRN's constant gain alone is detectably better than no LRN, and no difference from the baseline "
      f"was detected without the normalisation (it could hide ±{gain_only.largest_hidden():.1f}): the "
      f"effect is mostly one of scale, not of normalisation across channels."
    )
  return "the controls do not separate the two accounts (scale or normalisation) at these seeds."


def k1_intervals(loaded):
  """k1_reading's intervals of the 10-crop top-1 error: no LRN against the baseline, LRN with k = 1
  against the baseline, and LRN with k = 1 against no LRN."""
  return (
    controls.paired(loaded, "baseline", "no_lrn"),
    controls.paired(loaded, "baseline", "lrn_k1"),
    controls.paired(loaded, "no_lrn", "lrn_k1"),
  )


def k1_reading(no_lrn: effects.Interval, k1: effects.Interval, k1_vs_none: effects.Interval) -> str:
  """Whether LRN with k = 1 bears out the gain reading (K1_RULE).

  Args:
    no_lrn: no LRN minus the baseline (positive: removing LRN hurts).
    k1: LRN with k = 1 minus the baseline (positive: worse than the paper's k = 2).
    k1_vs_none: LRN with k = 1 minus no LRN (negative: better than no LRN).

  Returns:
    The reading, one sentence.
  """
  if min(no_lrn.n, k1.n, k1_vs_none.n) < 2:
    return "too few seeds yet to test the gain reading with k = 1."
  if not (no_lrn.excludes_zero() and no_lrn.mean > 0):
    return "removing LRN has no detected effect here, so LRN with k = 1 has no effect to account for."
  worse = k1.excludes_zero() and k1.mean > 0
  better_than_none = k1_vs_none.excludes_zero() and k1_vs_none.mean < 0
  if worse and not better_than_none:
    return (
      f"LRN with k = 1 is detectably worse than the paper's k = 2 ({fmt.fmt_interval(k1)}) and not detectably "
      f"better than no LRN ({fmt.fmt_interval(k1_vs_none)}): the normalisation without the gain does not keep "
      f"LRN's effect, as the gain reading predicts; the reading holds."
    )
  if better_than_none and not worse:
    return (
      f"LRN with k = 1 is detectably better than no LRN ({fmt.fmt_interval(k1_vs_none)}) and not detectably "
      f"worse than the paper's k = 2 ({fmt.fmt_interval(k1)}, it could hide ±{k1.largest_hidden():.1f}): the "
      f"normalisation keeps LRN's effect without the gain, so the gain reading fails."
    )
  if worse and better_than_none:
    return (
      f"LRN with k = 1 is detectably worse than the paper's k = 2 ({fmt.fmt_interval(k1)}) and detectably "
      f"better than no LRN ({fmt.fmt_interval(k1_vs_none)}): the gain is part of LRN's effect, not all of it."
    )
  return (
    f"LRN with k = 1 is neither detectably worse than the paper's k = 2 ({fmt.fmt_interval(k1)}) nor "
    f"detectably better than no LRN ({fmt.fmt_interval(k1_vs_none)}): the control does not separate the gain "
    f"from the normalisation ({fmt.count(k1.n, 'seed')} paired)."
  )
