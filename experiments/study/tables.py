"""The study report's tables of results: the status, the claims, overfitting, speed, and every run.

Each function returns the Markdown lines of one section from the loaded runs (measures.load_all); the
numbers come from measures and are written by formatting, so a table never computes a statistic itself.
"""

import math
from typing import List

import numpy as np

from alexnet_jax.analysis import effects
from experiments.study import arms as arms_lib
from experiments.study import formatting as fmt
from experiments.study import measures

# The final errors every error table gives, each 10-crop (the paper's test) beside the centre crop's.
ERROR_COLUMNS = ("eval_ten_crop/top1_error", "eval/top1_error", "eval_ten_crop/top5_error", "eval/top5_error")


def status_section(arms, loaded, command: str = "python -m experiments.study") -> List[str]:
  """The status section: the runs finished of those planned, per arm, and those that did not train.

  Args:
    arms: the study's arms (arms.arms_of).
    loaded: {arm name: its finished runs} (measures.load_all).
    command: the command that continues the study.

  Returns:
    The section's Markdown lines.
  """
  planned = sum(a.seeds for a in arms)
  done = sum(len(loaded[a.name]) for a in arms)
  lines = ["## Status", ""]
  if done < planned:
    lines += [
      f"**Partial results: {done} of {planned} runs finished.** The study continues where it stopped "
      f"(`{command}`, finished runs are skipped); rows with fewer seeds than planned "
      f"are marked, and a claim with fewer than 2 trained seeds has no interval yet.",
      "",
    ]
  else:
    lines += [f"All {planned} runs finished.", ""]
  lines += ["| arm | what | seeds finished / planned | did not train |", "|---|---|---|---|"]
  for arm in arms:
    results = loaded[arm.name]
    failed = [str(r["seed"]) for r in results if r["failed"]]
    lines.append(
      f"| {arm.name} | {arm.what} | {len(results)} / {arm.seeds} | "
      f"{(str(len(failed)) + ' of ' + str(len(results)) + ' (seed ' + ', '.join(failed) + ')') if failed else '–'} |"
    )
  return lines + [""]


def claims_section(claims, loaded) -> List[str]:
  """The claims table: each claim's Δ of every error measure, and its verdict on its own measure.

  Args:
    claims: the paper's claims (arms.CLAIMS).
    loaded: {arm name: its finished runs} (measures.load_all).

  Returns:
    The section's Markdown lines.
  """
  base = loaded["baseline"]
  measured = [
    f"the validation-training gap for the claims about overfitting ({numbers(claims, 'gap')}; next section)",
    f"the epochs to a training error for {numbers(claims, 'epochs', 'claim ')} (below)",
  ]
  measured = [m for m, kind in zip(measured, ("gap", "epochs")) if any(c.measured_by == kind for c in claims)]
  lines = [
    "## The claims",
    "",
    "Epochs: the length of the runs compared. Δ: the arm's error minus the baseline's, in points, "
    "seed-paired, mean [95% t interval]; positive means the paper's direction (removing the component "
    "hurts). Verdict on the claim's own measure, named first: the 10-crop top-1 error (the paper's test "
    "protocol)" + "".join(f", {m}" for m in measured) + ": *confirmed* (the interval excludes 0 on the paper's "
    "side), *not detected* (it includes 0; the largest effect it could still hide is given), *reversed*, "
    "*too few seeds* (fewer than 2 trained, or seeds whose differences agree exactly: a zero-width "
    "interval).",
    "",
    "| # | claim (section) | paper | later anchors | seeds | epochs | Δ top-1 (10-crop) | Δ top-1 (centre) "
    "| Δ top-5 (10-crop) | Δ top-5 (centre) | verdict |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for claim in claims:
    arm = loaded[claim.arm]
    trained = sum(not r["failed"] for r in arm)
    cells = []
    for metric in ERROR_COLUMNS:
      cells.append(fmt.fmt_interval(measures.paired_delta(base, arm, metric)))
    verdict = f"{fmt.MEASURE_NAMES[claim.measured_by]}: {fmt.verdict_text(measures.claim_effect(claim, loaded), claim)}"
    lines.append(
      f"| {claim.number} | {claim.claim} ({claim.section}) | {claim.paper} | {claim.anchors or '–'} | "
      f"{trained} of {len(arm)} trained | {fmt.run_epochs(base + arm)} | " + " | ".join(cells) + f" | {verdict} |"
    )
  return lines + ["", "![each claim's Δ with its interval and seeds, beside the paper's](effects.png)", ""]


def numbers(claims, measured_by: str, prefix: str = "") -> str:
  """The numbers of the claims measured by `measured_by`: '6, 7', or with `prefix` 'claim 1'."""
  return prefix + ", ".join(str(c.number) for c in claims if c.measured_by == measured_by)


def arm_errors_section(arms, loaded) -> List[str]:
  """Each arm's final errors: the mean over its seeds that trained, and their range.

  Args:
    arms: the study's arms.
    loaded: {arm name: its finished runs} (measures.load_all).

  Returns:
    The section's Markdown lines.
  """
  lines = [
    "## Each arm's error",
    "",
    "Final validation error (%) of each arm: mean over the seeds that trained (range), 10-crop (the "
    "paper's test) and centre crop.",
    "",
    "| arm | seeds trained | top-1 (10-crop) | top-1 (centre) | top-5 (10-crop) | top-5 (centre) |",
    "|---|---|---|---|---|---|",
  ]
  for arm in arms:
    results = loaded[arm.name]
    if results:
      cells = [mean_and_range(measures.values(results, key)) for key in ERROR_COLUMNS]
      trained = sum(not r["failed"] for r in results)
      lines.append(f"| {arm.name} | {trained} of {len(results)} | " + " | ".join(cells) + " |")
  return lines + [""]


def mean_and_range(seed_values) -> str:
  """'25.30 (24.9-25.8)': the mean of the values and their range; '–' where there are none."""
  found = list(seed_values.values())
  if not found:
    return "–"
  return f"{np.mean(found):.2f} ({min(found):.1f}-{max(found):.1f})"


def overfitting_section(claims, loaded, data: arms_lib.Data = arms_lib.IMAGENETTE) -> List[str]:
  """The overfitting table: each run's validation-training gap and each overfitting claim's Δ gap.

  Args:
    claims: the paper's claims (arms.CLAIMS); those of kind 'overfit' are tabulated.
    loaded: {arm name: its finished runs} (measures.load_all).
    data: the dataset's facts (its number of training images).

  Returns:
    The section's Markdown lines; none where the dataset runs no overfitting claim.
  """
  if not any(c.kind == "overfit" for c in claims):
    return []
  base = loaded["baseline"]
  lines = [
    "## Overfitting: the gap between validation and training error",
    "",
    f"Gap: validation top-1 error minus the error on all {data.train_images:,} training images, both scored as "
    "evaluation scores them (centre crop, no dropout) at the end. Δ gap: the arm's gap minus the baseline's, "
    "seed-paired; positive means more overfitting without the component.",
    "",
    "| arm | gap per seed | gap, mean | Δ gap | verdict |",
    "|---|---|---|---|---|",
  ]
  base_gaps = measures.values(base, measures.gap)
  mean_of = lambda d: f"{np.mean(list(d.values())):.1f}" if d else "–"
  lines.append(f"| baseline | {fmt.fmt_seeds(base_gaps) or '–'} | {mean_of(base_gaps)} | – | – |")
  for claim in claims:
    if claim.kind != "overfit":
      continue
    gaps = measures.values(loaded[claim.arm], measures.gap)
    interval = effects.paired_difference(base_gaps, gaps)
    lines.append(
      f"| {claim.arm} (claim {claim.number}) | {fmt.fmt_seeds(gaps) or '–'} | {mean_of(gaps)} | "
      f"{fmt.fmt_interval(interval)} | {fmt.verdict_text(interval, claim)} |"
    )
  return lines + [""]


def speed_section(claims, loaded) -> List[str]:
  """Claim 1's section: the epochs to the baseline's quarter-mark training error, and the epochs to converge.

  Args:
    claims: the paper's claims (arms.CLAIMS); those of kind 'speed' are tabulated.
    loaded: {arm name: its finished runs} (measures.load_all).

  Returns:
    The section's Markdown lines.
  """
  threshold = measures.speed_threshold(loaded["baseline"])
  lines = ["## Claim 1: ReLU against tanh (figure 1's analogue)", ""]
  if threshold is None:
    return lines + ["No baseline run has finished yet.", ""]
  lines += [
    f"Epochs to a training error of {100 * threshold:.1f}% (the baseline's mean training error at a "
    f"quarter of its epochs; training error as logged during training, with dropout and augmentation, "
    f"over each logging interval). Δ: the arm's epochs minus the baseline's, seed-paired; 'never' "
    f"counts as the run's length (a lower bound).",
    "",
    "| arm | epochs per seed | Δ epochs | speed-up of ReLU | verdict |",
    "|---|---|---|---|---|",
  ]
  base_epochs = measures.values(loaded["baseline"], lambda r: measures.epochs_to(r["train_curve"], threshold))
  lines.append(f"| baseline (ReLU) | {fmt.fmt_seeds(base_epochs, 2, 'never')} | – | – | – |")
  for claim in claims:
    if claim.kind == "speed":
      epochs, interval, ratio = measures.epochs_effect(loaded["baseline"], loaded[claim.arm], threshold)
      lines.append(
        f"| {claim.arm} | {fmt.fmt_seeds(epochs, 2, 'never') or '–'} | {fmt.fmt_interval(interval)} | "
        f"{f'{ratio:.2f}x' if math.isfinite(ratio) else '–'} | {fmt.verdict_text(interval, claim)} |"
      )
  lines += ["", "![training error per epoch, ReLU against tanh](figure1_relu_tanh.png)", ""]
  return lines + converge_epochs_lines(claims, loaded)


def converge_epochs_lines(claims, loaded) -> List[str]:
  """The epochs a component costs (dropout, section 4.2), read on the validation error: evaluation runs
  without dropout in either net, where the logged training error of the net with dropout is raised by
  the dropout itself."""
  threshold = measures.speed_threshold(loaded["baseline"], curve="curve")
  chosen = [c for c in claims if c.epochs_too]
  if threshold is None or not chosen:
    return []
  base_epochs = measures.values(loaded["baseline"], lambda r: measures.epochs_to(r["curve"], threshold))
  lines = [
    f"## Epochs to converge (claim {', '.join(str(c.number) for c in chosen)})",
    "",
    f"Epochs to a validation top-1 error (centre, scored once an epoch) of {100 * threshold:.1f}%, the "
    f"baseline's mean at a quarter of its epochs; read on the validation error because the logged "
    f"training error of a net with dropout is raised by the dropout itself. Δ: the arm's epochs minus the "
    f"baseline's; negative means the net without the component got there sooner.",
    "",
    "| arm | epochs per seed | Δ epochs | baseline's epochs over the arm's |",
    "|---|---|---|---|",
    f"| baseline | {fmt.fmt_seeds(base_epochs, 2, 'never')} | – | – |",
  ]
  for claim in chosen:
    epochs, interval, ratio = measures.epochs_effect(loaded["baseline"], loaded[claim.arm], threshold, curve="curve")
    lines.append(
      f"| {claim.arm} | {fmt.fmt_seeds(epochs, 2, 'never') or '–'} | {fmt.fmt_interval(interval)} | "
      f"{f'{1 / ratio:.2f}x' if math.isfinite(ratio) and ratio else '–'} |"
    )
  return lines + [""]


def per_seed_section(arms, loaded) -> List[str]:
  """The table of every run: its final errors, whether it trained, and its wall time.

  Args:
    arms: the study's arms.
    loaded: {arm name: its finished runs} (measures.load_all).

  Returns:
    The section's Markdown lines.
  """
  lines = [
    "## Every run",
    "",
    "Wall minutes: every segment of a run that was interrupted and resumed (their number in brackets).",
    "",
    "| arm | seed | top-1 (10-crop) | top-1 (centre) | top-5 (10-crop) | top-5 (centre) | train top-1 | trained "
    "| wall min |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for arm in arms:
    for r in loaded[arm.name]:
      f = r["final"]
      cell = lambda k: f"{100 * f[k]:.2f}" if k in f else "–"
      segments = f" ({r['segments']} segments)" if r["segments"] > 1 else ""
      lines.append(
        f"| {arm.name} | {r['seed']} | "
        + " | ".join(cell(k) for k in (*ERROR_COLUMNS, "train_eval/top1_error"))
        + f" | {fmt.trained_cell(r)} | {r['wall_time_s'] / 60:.1f}{segments} |"
      )
  return lines + [""]
