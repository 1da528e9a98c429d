"""The study report's words: the headline (also the repository README's findings) and the findings.

The verdicts, where the measurements go against the paper or later work, and what the budget leaves open,
as sentences built from the same intervals as the tables (measures), so the prose cannot say more than
the numbers do.
"""

import math
from typing import Dict, List

from alexnet_jax.analysis import effects
from experiments.study import arms as arms_lib
from experiments.study import budget, controls, figure3, lrn, measures, recipe, replication
from experiments.study import formatting as fmt


def claim_phrase(claim, loaded) -> str:
  """'claim 3 (LRN: +1.2 [+0.1, +2.3] points of ... (+1.0 [...] with the centre crop), 5 seeds)', with the
  error Δ beside a gap."""
  interval = measures.claim_effect(claim, loaded)
  text = f"claim {claim.number} ({claim.topic}: {fmt.fmt_interval(interval, 1)} {fmt.UNITS[claim.measured_by]}"
  error, centre = (
    measures.paired_delta(loaded["baseline"], loaded[claim.arm], key) for key in (measures.PRIMARY, "eval/top1_error")
  )
  if claim.measured_by == "gap":
    text += f", and {fmt.fmt_interval(error, 1)} of 10-crop top-1 error"
  if claim.measured_by in ("gap", "error"):
    text += f" ({fmt.fmt_interval(centre, 1)} with the centre crop)"
  threshold = measures.speed_threshold(loaded["baseline"])
  if claim.measured_by == "epochs" and threshold is not None:
    ratio = measures.epochs_effect(loaded["baseline"], loaded[claim.arm], threshold)[2]
    text += f" to {100 * threshold:.0f}% training error" + (f", {ratio:.2f}x ReLU's" if math.isfinite(ratio) else "")
  val_threshold = measures.speed_threshold(loaded["baseline"], curve="curve")
  if claim.epochs_too and val_threshold is not None:
    _, delta, ratio = measures.epochs_effect(loaded["baseline"], loaded[claim.arm], val_threshold, curve="curve")
    if math.isfinite(ratio) and ratio:
      text += (
        f"; the baseline needs {1 / ratio:.2f}x the epochs to {100 * val_threshold:.0f}% validation error "
        f"(Δ {fmt.fmt_interval(delta, 1)} epochs without the component)"
      )
  return text + f", {fmt.count(interval.n, 'seed')})"


def findings(arms, claims, loaded, data: arms_lib.Data = arms_lib.IMAGENETTE) -> str:
  """The study's findings in detail: every claim's Δ grouped by verdict, the runs that did not train,
  figure 3's reading and the controls'.

  Args:
    arms: the arms of the dataset.
    claims: the claims whose arm it runs.
    loaded: {arm name: its finished runs} (measures.load_all).
    data: the dataset's facts.

  Returns:
    The findings, one paragraph.
  """
  done, planned = sum(len(loaded[a.name]) for a in arms), sum(a.seeds for a in arms)
  groups: Dict[str, List[str]] = {}
  for claim in claims:
    verdict = effects.verdict(measures.claim_effect(claim, loaded), measures.paper_sign(claim))
    groups.setdefault(verdict, []).append(claim_phrase(claim, loaded))
  c = loaded["baseline"][0]["summary"]["config"] if loaded["baseline"] else None
  scale = (
    f"at {c['augment']['crop_size']} px crops, x{c['model']['width_multiplier']:g} width and "
    f"{c['num_epochs']:g} epochs on {data.short}"
    if c
    else "at the study geometry"
  )
  status = f"all {planned} runs" if done == planned else f"{done} of {planned} runs (the rest still to run)"
  sentences = [
    f"Study state: {status}; each Δ is the arm without the component minus the baseline, seed-paired, "
    f"mean [95% t interval], positive in the paper's direction, {scale}."
  ]
  wording = {
    "confirmed": "Confirmed",
    "not detected": "Not detected (each interval bounds the effect that could still hide)",
    "reversed": "Reversed, against the paper",
    "too few seeds": "No verdict yet (too few seeds)",
  }
  for verdict, label in wording.items():
    if groups.get(verdict):
      sentences.append(f"{label}: " + "; ".join(groups[verdict]) + ".")
  failed = [
    f"{a.name} {sum(r['failed'] for r in loaded[a.name])} of {len(loaded[a.name])}"
    for a in arms
    if any(r["failed"] for r in loaded[a.name])
  ]
  if failed:
    sentences.append("Runs that did not train (left out of the pairs): " + ", ".join(failed) + ".")
  diffs = measures.tower_differences(loaded)
  two, one = effects.t_interval(diffs["baseline"].values()), effects.t_interval(diffs["one_tower"].values())
  sentences.append("Figure 3: " + figure3.kernels_reading(two, one, diffs))
  sentences.append("The controls: " + readings(loaded))
  return " ".join(sentences)


def readings(loaded) -> str:
  """What the controls the dataset runs support, one sentence each, for the report's findings."""
  threshold = measures.speed_threshold(loaded["baseline"], curve="curve")
  said = []
  if "no_lrn" in loaded:
    said.append("LRN: " + lrn.lrn_reading(*lrn.lrn_intervals(loaded)))
  if "lrn_k1" in loaded:
    said.append("The k = 1 control: " + lrn.k1_reading(*lrn.k1_intervals(loaded)))
  if controls.runs_any(loaded, "one_gpu_half", *controls.TOWER_CONTROLS):
    said.append("The towers: " + controls.tower_reading(*controls.tower_intervals(loaded)))
  if controls.runs_any(loaded, "no_dropout", *controls.DROPOUT_CONTROLS):
    said.append("Dropout's cost in epochs: " + controls.dropout_reading(*controls.dropout_intervals(loaded, threshold)))
  return " ".join(said)


def disagreements(claims, loaded) -> List[str]:
  """Where the measurements go against the paper: a reversed verdict, an error that falls where the paper
  says it rises, or an effect whose interval excludes the paper's or later work's size (the anchors)."""
  out = []
  for claim in claims:
    own = measures.claim_effect(claim, loaded)
    if effects.verdict(own, measures.paper_sign(claim)) == "reversed":
      out.append(
        f"{claim.topic} goes the other way (claim {claim.number}: {fmt.fmt_interval(own, 1)} "
        f"{fmt.UNITS[claim.measured_by]})"
      )
    error = measures.paired_delta(loaded["baseline"], loaded[claim.arm])
    if effects.verdict(error, measures.paper_sign(claim)) == "too few seeds":
      continue
    if claim.measured_by != "error" and error.high < 0:
      out.append(
        f"without {claim.topic} the 10-crop top-1 error is lower, not higher (claim {claim.number}: "
        f"{fmt.fmt_interval(error, 1)} points at this budget)"
      )
    if claim.measured_by != "error":
      continue
    sizes = (("the paper's", (claim.paper_effect or (None,))[0]), ("later work's", claim.anchor_effect))
    outside = [
      f"{'larger' if size < error.low else 'smaller'} than {whose} ({size:+.1f})"
      for whose, size in sizes
      if size is not None and not error.low <= size <= error.high
    ]
    if outside:
      out.append(
        f"the effect of {claim.topic} (claim {claim.number}: {fmt.fmt_interval(error, 1)} points) is "
        + " and ".join(outside)
      )
  return out


def headline(arms, claims, loaded, other=None, data: arms_lib.Data = arms_lib.IMAGENETTE, replica=None) -> str:
  """The study in three sentences: the verdicts, where it disagrees with the paper, and what the budget
  leaves open; heads the report's findings and, by `--readme`, the repository README's.

  Args:
    arms: the arms of the dataset.
    claims: the claims whose arm it runs.
    loaded: {arm name: its finished runs} (measures.load_all).
    other: the same study at another budget (loaded likewise), or None: how far the baseline moved.
    data: the dataset's facts.
    replica: the second dataset's study (replication.Replica), or None: how many findings replicate.

  Returns:
    The headline, one paragraph.
  """
  done, planned = sum(len(loaded[a.name]) for a in arms), sum(a.seeds for a in arms)
  seeds = sorted({len(loaded[c.arm]) for c in claims} | {len(loaded["baseline"])})
  seed_range = fmt.count(seeds[-1], "seed") if seeds[0] == seeds[-1] else f"{seeds[0]}-{seeds[-1]} seeds"
  epochs = fmt.run_epochs(loaded["baseline"])
  of = (
    f"the paper's {len(claims)} claims"
    if len(claims) == len(arms_lib.CLAIMS)
    else f"{len(claims)} of the paper's {len(arms_lib.CLAIMS)} claims"
  )
  first = (
    f"Of {of}, measured at a CPU scale ({data.short}, {epochs} epochs, {done} of "
    f"{planned} runs, {seed_range} per claim, seed-paired 95% t intervals of the 10-crop "
    f"top-1 error unless named), " + "; ".join(verdict_counts(claims, loaded)) + "."
  )
  return " ".join([first, against_sentence(claims, loaded), budget_sentence(loaded, epochs, other, replica)])


def readme_block(claims, loaded, replica=None) -> str:
  """The repository README's findings: each claim's verdict as a small table (with a replica that has
  runs, beside each claim's Δ and replication verdict there), then where the study differs from the paper
  or later work, which controls the report reads, whether its runs converged and how many findings
  replicate (the controls' readings and the comparison between budgets stay in the report).

  Args:
    claims: the claims whose arm the dataset runs.
    loaded: {arm name: its finished runs} (measures.load_all).
    replica: the second dataset's study (replication.Replica), or None.

  Returns:
    Markdown: the table and a paragraph.
  """
  second = replica if replica is not None and any(replica.loaded.values()) else None
  rows = [
    "Δ: the 10-crop top-1 error without the component minus with it, seed-paired, unless named; positive is "
    "the paper's direction."
    + (
      f" On {second.data.short}: its Δ there and whether it replicates (same direction, mean inside the "
      f"interval here); –: not run there."
      if second
      else ""
    ),
    "",
    "| claim (section) | paper | measured Δ [95% interval] | verdict |"
    + (f" on {second.data.short} |" if second else ""),
    "| --- | --- | --- | --- |" + (" --- |" if second else ""),
  ]
  for claim in claims:
    interval = measures.claim_effect(claim, loaded)
    unit = {"error": "points", "gap": "points of gap", "epochs": "epochs"}[claim.measured_by]
    rows.append(
      f"| {claim.number} {claim.topic} ({claim.section.split(',')[0]}) | {claim.paper_short} | "
      f"{fmt.fmt_interval(interval, 1)} {unit} | {fmt.verdict_text(interval, claim)} |"
      + (f" {replication.claim_cell(claim.number, loaded, second)} |" if second else "")
    )
  epochs = fmt.run_epochs(loaded["baseline"])
  return (
    "\n".join(rows)
    + "\n\n"
    + " ".join(
      filter(
        None,
        [
          differences_sentence(claims, loaded),
          controls_pointer(loaded),
          budget_sentence(loaded, epochs, None, None),
          replication.sentence(loaded, second, brief=True) if second else "",
        ],
      )
    )
  )


def verdict_counts(claims, loaded) -> List[str]:
  """'5 confirmed: two towers (2), ...' per verdict, in the order confirmed, reversed, not detected, too few
  seeds; each claim with the measure it is read on where that is not the error, and what it could hide."""
  by_verdict: Dict[str, List[str]] = {}
  threshold = measures.speed_threshold(loaded["baseline"])
  for claim in claims:
    interval = measures.claim_effect(claim, loaded)
    verdict = effects.verdict(interval, measures.paper_sign(claim))
    how = "" if claim.measured_by == "error" else f", on the {fmt.UNITS[claim.measured_by].replace('points of ', '')}"
    ratio = (
      measures.epochs_effect(loaded["baseline"], loaded[claim.arm], threshold)[2] if threshold is not None else math.nan
    )
    if claim.measured_by == "epochs" and math.isfinite(ratio):
      how += f": {ratio:.2f}x the baseline's"
    if verdict == "not detected":
      how += f"; could hide ±{interval.largest_hidden():.1f}"
    by_verdict.setdefault(verdict, []).append(f"{claim.topic} ({claim.number}{how})")
  order = ("confirmed", "reversed", "not detected", "too few seeds")
  return [f"{len(by_verdict[k])} {k}: {', '.join(by_verdict[k])}" for k in order if k in by_verdict]


def differences_sentence(claims, loaded) -> str:
  """Where the study differs from the paper or later work (figure 3's towers included)."""
  against = disagreements(claims, loaded)
  diffs = measures.tower_differences(loaded)
  two, one = effects.t_interval(diffs["baseline"].values()), effects.t_interval(diffs["one_tower"].values())
  if two.n >= 2 and one.n >= 2 and not two.low > one.high:
    against.append("figure 3's colour specialisation of the towers is not reproduced")
  if not against:
    return "Nothing measured differs from the paper or later work."
  return "Where it differs from the paper or later work: " + "; ".join(against) + "."


def controls_pointer(loaded) -> str:
  """The README's pointer to the report's controls, naming those that have runs; '' for none."""
  asks = [
    ("lrn_gain_only", "what LRN's effect is made of (its gain, k = 1)"),
    ("one_tower", "whether the towers' edge is their width"),
    (
      "dropout_paper",
      "what the paper's dropout placement changes (claim 7 drops fc6's and fc7's inputs, as torchvision does)",
    ),
  ]
  named = [text for arm, text in asks if loaded.get(arm)]
  return f"The report's controls ask {fmt.listed(named)}." if named else ""


def against_sentence(claims, loaded) -> str:
  """The headline's second sentence: where the study differs from the paper or later work, and what the
  LRN controls say LRN's effect is."""
  second = differences_sentence(claims, loaded)
  if "no_lrn" in loaded:
    second += " What LRN's effect is: " + lrn.lrn_reading(*lrn.lrn_intervals(loaded))
  k1 = lrn.k1_intervals(loaded)
  if "lrn_k1" in loaded and min(i.n for i in k1) >= 2:
    second += " The k = 1 control: " + lrn.k1_reading(*k1)
  placement = recipe.dropout_reading(loaded)
  if placement:
    second += f" Dropout acts on fc6's and fc7's inputs here (torchvision's placement); {placement}."
  return second


def budget_sentence(loaded, epochs: str, other, replica) -> str:
  """The headline's third sentence: whether the runs are flat, how far the baseline moved between budgets
  (with `other`) and how many findings replicate (with `replica`)."""
  flat, trained = measures.flat_counts(loaded)
  if trained and flat == trained:
    third = (
      f"All {trained} trained runs were flat over their last 20% of epochs (validation error within "
      f"{measures.CONVERGED_POINTS:g} point): by that criterion these are converged runs."
    )
  else:
    third = (
      f"{flat} of {trained} trained runs were flat over their last 20% of epochs: these are the verdicts "
      f"of a {epochs}-epoch budget, not of converged runs (the report has every number)."
    )
  if other is not None:
    third = " ".join(filter(None, [third, budget.sentence(loaded, other)]))
  if replica is not None:
    third = " ".join(filter(None, [third, replication.sentence(loaded, replica)]))
  return third


def findings_section(arms, claims, loaded, summary: str, data: arms_lib.Data = arms_lib.IMAGENETTE) -> List[str]:
  """The findings section: the headline, then the findings in detail.

  Args:
    arms: the study's arms.
    claims: the paper's claims.
    loaded: {arm name: its finished runs} (measures.load_all).
    summary: the headline (headline()).
    data: the dataset's facts.

  Returns:
    The section's Markdown lines.
  """
  return ["## Findings", "", summary, "", findings(arms, claims, loaded, data), ""]
