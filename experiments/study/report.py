"""The reproduction study's report: README.md and figures, generated from the runs' copied files.

Reads `<report_dir>/runs/<arm>/seed<k>/` (summary.json, metrics.jsonl, conv1_kernels.npy, as
experiments/study.py copies them) and writes `<report_dir>/README.md`, `figure1_relu_tanh.png`,
`figure3_conv1_kernels.png`, `figure3_colour_share.png` and `curves.png`. Every number in the README comes
from those files; nothing is typed in by hand.
"""

import json
import math
import os
import platform
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from alexnet_jax.analysis import ablate, effects, kernels

METRIC_NAMES = {
  "eval/top1_error": "top-1",
  "eval/top5_error": "top-5",
  "eval_ten_crop/top1_error": "top-1 (10-crop)",
  "eval_ten_crop/top5_error": "top-5 (10-crop)",
}
PRIMARY = "eval_ten_crop/top1_error"  # the paper's test protocol (section 4.1): the error verdicts read it
# What each claim's headline verdict reads (study.Claim.measured_by), in words and in a table cell.
UNITS = {"error": "points of 10-crop top-1 error", "gap": "points of validation-training gap", "epochs": "epochs"}
MEASURE_NAMES = {"error": "10-crop top-1", "gap": "gap", "epochs": "epochs"}
CONVERGED_POINTS = 1.0  # a run is flat when its validation error's trend moved less than this over its last 20%


# ------------------------------------------------------------------------------------------ loading


def load_arm(report_dir: str, arm) -> List[dict]:
  """The finished seeds of an arm: ablate.read_run's fields plus 'failed', 'gap' and 'kernels'."""
  results = []
  for seed in range(arm.seeds):
    folder = os.path.join(report_dir, "runs", arm.name, f"seed{seed}")
    run = ablate.Run(arm.name, dict(arm.overrides), seed, folder)
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
    results.append(result)
  return results


def load_all(report_dir: str, arms) -> Dict[str, List[dict]]:
  """{arm name: its finished seeds (load_arm)} for every arm."""
  return {arm.name: load_arm(report_dir, arm) for arm in arms}


def values(results: Sequence[dict], key) -> Dict[int, float]:
  """{seed: value} over the runs that trained; `key` is a final metric (in points) or a function."""
  get = key if callable(key) else (lambda r: 100 * r["final"].get(key, math.nan))
  return {r["seed"]: get(r) for r in results if not r["failed"]}


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


def claim_effect(claim, loaded) -> effects.Interval:
  """The seed-paired Δ the claim's headline verdict reads (`claim.measured_by`)."""
  base, arm = loaded["baseline"], loaded[claim.arm]
  if claim.measured_by == "gap":
    return effects.paired_difference(values(base, gap), values(arm, gap))
  if claim.measured_by == "epochs":
    threshold = speed_threshold(base)
    return effects.t_interval([]) if threshold is None else epochs_effect(base, arm, threshold)[1]
  return effects.paired_difference(values(base, PRIMARY), values(arm, PRIMARY))


def specialisation(kernel, towers: int = 2) -> Dict[str, float]:
  """Mean colour share (kernels.colour_share) of each half of conv1's kernels, the more colourful half
  first ('a'), and their difference: the paper's towers (figure 3), or two arbitrary halves as a control."""
  shares = [float(kernels.colour_share(h).mean()) for h in kernels.tower_halves(kernel, towers)]
  a, b = max(shares), min(shares)
  return {"a": a, "b": b, "difference": a - b}


# ------------------------------------------------------------------------------------------ formatting


def run_epochs(results: Sequence[dict]) -> str:
  """The epochs the runs trained for ('15', or '10-15' where they differ)."""
  lengths = sorted({r["summary"]["epochs"] for r in results})
  if not lengths:
    return "–"
  return f"{lengths[0]:g}" if len(lengths) == 1 else f"{lengths[0]:g}-{lengths[-1]:g}"


def fmt_interval(interval: effects.Interval, digits: int = 2) -> str:
  if interval.n == 0:
    return "–"
  if interval.n < 2:
    return f"{interval.mean:+.{digits}f} (1 seed)"
  return f"{interval.mean:+.{digits}f} [{interval.low:+.{digits}f}, {interval.high:+.{digits}f}]"


def count(n: int, noun: str) -> str:
  """'1 seed', '3 seeds'."""
  return f"{n} {noun}{'' if n == 1 else 's'}"


def fmt_seeds(seed_values: Dict[int, float], digits: int = 1, missing: str = "–") -> str:
  return ", ".join(f"{v:.{digits}f}" if math.isfinite(v) else missing for _, v in sorted(seed_values.items()))


def paper_sign(claim) -> float:
  return 1.0  # every claim says that removing (or replacing) the component makes things worse


def verdict_text(interval: effects.Interval, claim) -> str:
  verdict = effects.verdict(interval, paper_sign(claim))
  if verdict == "not detected":
    return f"not detected (could hide ±{interval.largest_hidden():.1f})"
  return verdict


# ------------------------------------------------------------------------------------------ sections


def status_section(arms, loaded) -> List[str]:
  planned = sum(a.seeds for a in arms)
  done = sum(len(loaded[a.name]) for a in arms)
  lines = ["## Status", ""]
  if done < planned:
    lines += [
      f"**Partial results: {done} of {planned} runs finished.** The study continues where it stopped "
      f"(`python -m experiments.study`, finished runs are skipped); rows with fewer seeds than planned "
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


def setup_section(loaded, command, invocation_s) -> List[str]:
  summaries = [r["summary"] for results in loaded.values() for r in results]
  lines = ["## Setup", ""]
  if not summaries:
    return lines + ["No run has finished yet.", ""]
  base = summaries[0]["config"]
  walls = [s["wall_time_s"] for s in summaries]
  rates = [s["train_images_per_sec"] for s in summaries]
  lines += [
    f"- Data: `{base['dataset']['name']}` (Imagenette2, 10 ImageNet classes: 9,469 training and 3,925 "
    f"validation photos at 128 px), resized to {base['augment']['resize_to']} on the device, "
    f"{base['augment']['crop_size']}x{base['augment']['crop_size']} crops (the paper's 227 / 256 ratio).",
    f"- Network: preset `{base['model']['preset']}` at width x{base['model']['width_multiplier']} "
    f"({summaries[0]['parameters']:,} parameters in the baseline), batch {base['batch_size']}, "
    f"{base['num_epochs']:g} epochs, lr {base['optim']['learning_rate']} ({base['optim']['schedule']}, "
    f"{base['optim']['warmup_epochs']} warm-up epochs), momentum {base['optim']['momentum']}, weight decay "
    f"{base['optim']['weight_decay']} ({base['optim']['weight_decay_mode']}), init `{base['model']['init_scheme']}`.",
    f"- Runs: {len(summaries)} finished, {np.mean(walls) / 60:.1f} min each on average "
    f"({min(walls) / 60:.1f}-{max(walls) / 60:.1f}), {np.mean(rates):.0f} training images/s; device "
    f"`{summaries[0]['device_kind']}` x{summaries[0]['devices']}, jax {summaries[0]['jax_version']}. The "
    f"wall times include other work that shared the machine.",
    "- Seeds: seed k of every arm shares its initialisation and data order with seed k of the baseline; "
    "differences are seed-paired: mean [95% t interval] (alexnet_jax/analysis/effects.py).",
  ]
  if command:
    lines.append(
      f"- Command: `{command}`" + (f" (this invocation: {invocation_s / 60:.0f} min)" if invocation_s else "")
    )
  lines.append(
    f"- Report written on: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores."
  )
  return lines + [""]


def departures_section(loaded) -> List[str]:
  """Every way the study's recipe differs from section 5's, why, and the evidence where the study has it."""
  finished = loaded.get("baseline", [])
  if not finished:
    return ["## Departures from the paper's recipe (section 5)", "", "No baseline run has finished yet.", ""]
  c = finished[0]["summary"]["config"]
  m, a, o = c["model"], c["augment"], c["optim"]
  widths = "-".join(str(round(w * m["width_multiplier"])) for w in (96, 256, 384, 384, 256))
  init = loaded.get("paper_init", [])
  if init:
    errors = ", ".join(
      f"{100 * r['final'].get('eval/top1_error', math.nan):.1f}% (seed {r['seed']}, "
      f"{'did not train' if r['failed'] else 'trained'})"
      for r in init
    )
    init_evidence = f"the `paper_init` arm, N(0, 0.01) with biases of 1 at this geometry, ended at {errors}"
  else:
    init_evidence = "the `paper_init` arm (N(0, 0.01), biases of 1) has not run yet"
  rows = [
    (
      "ILSVRC-2012, 1000 classes, 1.2M images",
      "Imagenette2, 10 classes, 9,469 images",
      "a CPU budget; the errors are not comparable in level to the paper's, only the directions and sizes "
      "of the differences are",
    ),
    (
      "256 px images, 227 (text: 224) crops",
      f"128 px photos resized to {a['resize_to']}, {a['crop_size']} crops",
      "the step rate on 2 CPU cores (geometry.json: the candidates timed by experiments/study_geometry.py); "
      "the same crop ratio and layer geometry",
    ),
    (
      "conv widths 96-256-384-384-256, fc 4096",
      f"x{m['width_multiplier']:g}: {widths}, fc {round(4096 * m['width_multiplier'])}",
      "the step rate; every layer, tower, LRN and pooling in place",
    ),
    (
      "~90 epochs, lr 0.01 divided by 10 on plateaus",
      f"{c['num_epochs']:g} epochs, {o['schedule']} from lr {o['learning_rate']:g}, {o['warmup_epochs']:g} "
      f"warm-up epochs",
      "a fixed budget needs a schedule that ends; the convergence table shows whether the runs are flat at the end",
    ),
    ("N(0, 0.01) weights, biases 1 in conv2, 4, 5, fc6, 7", "He-normal weights, zero biases", init_evidence),
    (
      "mean subtraction only (section 2)",
      "mean subtraction and division by ImageNet's per-channel std",
      "He initialisation assumes inputs of unit variance",
    ),
    (
      "batch 128",
      f"batch {c['batch_size']}",
      "more steps per epoch on the small training set; not measured against 128",
    ),
  ]
  lines = [
    "## Departures from the paper's recipe (section 5)",
    "",
    "Weight decay is the paper's rule exactly (5e-4, coupled: the decay enters the momentum), and so "
    "are momentum 0.9, dropout 0.5, LRN's constants, the crops, flips, PCA lighting and 10-crop test.",
    "",
    "| paper | study | why, and the evidence |",
    "|---|---|---|",
  ]
  lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
  return lines + [""]


def claims_section(claims, loaded) -> List[str]:
  base = loaded["baseline"]
  lines = [
    "## The claims",
    "",
    "Epochs: the length of the runs compared. Δ: the arm's error minus the baseline's, in points, "
    "seed-paired, mean [95% t interval]; positive means the paper's direction (removing the component "
    "hurts). Verdict on the claim's own measure, named first: the 10-crop top-1 error (the paper's test "
    "protocol), the validation-training gap for the claims about overfitting (6, 7; next section), the "
    "epochs to a training error for claim 1 (below): *confirmed* (the interval excludes 0 on the paper's "
    "side), *not detected* (it includes 0; the largest effect it could still hide is given), *reversed*, "
    "*too few seeds* (fewer than 2 trained, or seeds whose differences agree exactly: a zero-width "
    "interval).",
    "",
    "| # | claim (section) | paper | later anchors | seeds | epochs | Δ top-1 | Δ top-5 | Δ top-1 (10-crop) "
    "| Δ top-5 (10-crop) | verdict |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for claim in claims:
    arm = loaded[claim.arm]
    trained = sum(not r["failed"] for r in arm)
    cells = []
    for metric in METRIC_NAMES:
      cells.append(fmt_interval(effects.paired_difference(values(base, metric), values(arm, metric))))
    verdict = f"{MEASURE_NAMES[claim.measured_by]}: {verdict_text(claim_effect(claim, loaded), claim)}"
    lines.append(
      f"| {claim.number} | {claim.claim} ({claim.section}) | {claim.paper} | {claim.anchors or '–'} | "
      f"{trained} of {len(arm)} trained | {run_epochs(base + arm)} | " + " | ".join(cells) + f" | {verdict} |"
    )
  return lines + ["", "![each claim's Δ with its interval and seeds, beside the paper's](effects.png)", ""]


def overfitting_section(claims, loaded) -> List[str]:
  base = loaded["baseline"]
  lines = [
    "## Overfitting: the gap between validation and training error",
    "",
    "Gap: validation top-1 error minus the error on all 9,469 training images, both scored as evaluation "
    "scores them (centre crop, no dropout) at the end. Δ gap: the arm's gap minus the baseline's, "
    "seed-paired; positive means more overfitting without the component.",
    "",
    "| arm | gap per seed | gap, mean | Δ gap | verdict |",
    "|---|---|---|---|---|",
  ]
  base_gaps = values(base, gap)
  mean_of = lambda d: f"{np.mean(list(d.values())):.1f}" if d else "–"
  lines.append(f"| baseline | {fmt_seeds(base_gaps) or '–'} | {mean_of(base_gaps)} | – | – |")
  for claim in claims:
    if claim.kind != "overfit":
      continue
    gaps = values(loaded[claim.arm], gap)
    interval = effects.paired_difference(base_gaps, gaps)
    lines.append(
      f"| {claim.arm} (claim {claim.number}) | {fmt_seeds(gaps) or '–'} | {mean_of(gaps)} | "
      f"{fmt_interval(interval)} | {verdict_text(interval, claim)} |"
    )
  return lines + [""]


def speed_section(claims, loaded) -> List[str]:
  threshold = speed_threshold(loaded["baseline"])
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
  base_epochs = values(loaded["baseline"], lambda r: epochs_to(r["train_curve"], threshold))
  lines.append(f"| baseline (ReLU) | {fmt_seeds(base_epochs, 2, 'never')} | – | – | – |")
  for claim in claims:
    if claim.kind == "speed":
      epochs, interval, ratio = epochs_effect(loaded["baseline"], loaded[claim.arm], threshold)
      lines.append(
        f"| {claim.arm} | {fmt_seeds(epochs, 2, 'never') or '–'} | {fmt_interval(interval)} | "
        f"{f'{ratio:.2f}x' if math.isfinite(ratio) else '–'} | {verdict_text(interval, claim)} |"
      )
  lines += ["", "![training error per epoch, ReLU against tanh](figure1_relu_tanh.png)", ""]
  return lines + converge_epochs_lines(claims, loaded)


def converge_epochs_lines(claims, loaded) -> List[str]:
  """The epochs a component costs (dropout, section 4.2), read on the validation error: evaluation runs
  without dropout in either net, where the logged training error of the net with dropout is raised by
  the dropout itself."""
  threshold = speed_threshold(loaded["baseline"], curve="curve")
  chosen = [c for c in claims if c.epochs_too]
  if threshold is None or not chosen:
    return []
  base_epochs = values(loaded["baseline"], lambda r: epochs_to(r["curve"], threshold))
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
    f"| baseline | {fmt_seeds(base_epochs, 2, 'never')} | – | – |",
  ]
  for claim in chosen:
    epochs, interval, ratio = epochs_effect(loaded["baseline"], loaded[claim.arm], threshold, curve="curve")
    lines.append(
      f"| {claim.arm} | {fmt_seeds(epochs, 2, 'never') or '–'} | {fmt_interval(interval)} | "
      f"{f'{1 / ratio:.2f}x' if math.isfinite(ratio) and ratio else '–'} |"
    )
  return lines + [""]


def kernels_section(loaded, report_dir) -> List[str]:
  lines = [
    "## Figure 3's analogue: do the towers specialise in colour?",
    "",
    "Colour share of a kernel: the share of its energy not in its grey component (at each tap, the mean "
    "of its three colour weights); 0 for a grey kernel, 2/3 for one that uses a single channel, 1 for a "
    "colour-opponent one (alexnet_jax/analysis/kernels.py). Per run: the mean share of each tower's conv1 "
    "kernels, the more colourful tower first (the paper's 'modulo a renumbering of the GPUs'), and their "
    "difference. Control: the same for the first and second half of the kernels of the one-tower net, "
    "whose halves nothing sets apart.",
    "",
    "| net | seed | tower a | tower b | difference |",
    "|---|---|---|---|---|",
  ]
  for name in ("baseline", "one_tower"):
    for r in loaded.get(name, []):
      if r["kernels"] is not None and not r["failed"]:
        s = specialisation(r["kernels"])
        lines.append(f"| {name} | {r['seed']} | {s['a']:.3f} | {s['b']:.3f} | {s['difference']:.3f} |")
  diffs = tower_differences(loaded)
  two, one = effects.t_interval(diffs["baseline"].values()), effects.t_interval(diffs["one_tower"].values())
  lines += [
    "",
    f"Difference between the halves, mean [95% t interval]: two towers {fmt_interval(two, 3)}, "
    f"one-tower control {fmt_interval(one, 3)}. " + kernels_reading(two, one, diffs),
    "",
  ]
  if os.path.exists(os.path.join(report_dir, "figure3_conv1_kernels.png")):
    lines += [
      "![conv1 kernels of the baseline, one tower per block of rows](figure3_conv1_kernels.png)",
      "",
      "![colour share per kernel, per tower and seed](figure3_colour_share.png)",
      "",
    ]
  return lines


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


def kernels_reading(two, one, diffs) -> str:
  if two.n < 2 or one.n < 2:
    return "Too few seeds yet for a reading."
  control_max = max(diffs["one_tower"].values())
  above = sum(d > control_max for d in diffs["baseline"].values())
  if two.low > one.high:
    return (
      f"The towers differ more than arbitrary halves do ({above} of {two.n} two-tower seeds above every "
      f"control seed): the specialisation is reproduced."
    )
  if above == 0:
    return (
      f"The towers do not differ more than arbitrary halves do in any seed (0 of {two.n} two-tower seeds "
      f"above every control seed): the paper's 'during every run' specialisation is not reproduced at "
      f"this scale."
    )
  return (
    f"The towers do not differ detectably more than arbitrary halves do ({above} of {two.n} two-tower "
    f"seeds above every control seed): the specialisation is not detected at this scale."
  )


def convergence_section(arms, claims, loaded) -> List[str]:
  lines = [
    "## Convergence",
    "",
    f"Change of the validation top-1 error (centre, points) over the last 20% of each run's epochs, read "
    f"off the least-squares line through every evaluation in that window; a run counts as flat (converged) "
    f"when it moved less than {CONVERGED_POINTS:g} point.",
    "",
    "| arm | change per seed | flat |",
    "|---|---|---|",
  ]
  for arm in arms:
    results = sorted(loaded[arm.name], key=lambda r: r["seed"])
    if results:
      cells = [signed_or_dash(late_change(r["curve"])) + (" (did not train)" if r["failed"] else "") for r in results]
      flat, trained = flat_counts({arm.name: results})
      lines.append(f"| {arm.name} | {', '.join(cells)} | {flat} of {trained} trained |")
  flat, trained = flat_counts(loaded)
  by_ends, _ = flat_counts(loaded, endpoint_change)
  scatters = [late_fit(r["curve"])[1] for rs in loaded.values() for r in rs if not r["failed"]]
  scatter = np.nanmedian(scatters) if scatters else math.nan
  lines += [
    "",
    f"{flat} of the {trained} runs that trained are flat by this measure; {by_ends} by the difference of two "
    f"single evaluations (the last, and the one at 80% of the epochs), which the evaluations' scatter about "
    f"the line (standard deviation, median over the runs: {scatter:.2f} points) moves on its own.",
    "",
  ]
  lines += effect_drift_lines(claims, loaded)
  caption = (
    "validation error per epoch of every arm: mean and range over the seeds that trained, each run that "
    "did not train dotted"
  )
  return lines + [f"![{caption}](curves.png)", ""]


def effect_drift_lines(claims, loaded, fraction: float = 0.8) -> List[str]:
  """Whether the claims' effects still moved late in the runs: the seed-paired Δ of the validation top-1
  error (centre) at `fraction` of the epochs and at the end. Runs that are not flat matter to a claim
  only where the difference between the arms still moves."""
  lines = [
    f"Do the effects still move? Δ validation top-1 error (centre, points), seed-paired, at "
    f"{fraction:.0%} of the epochs and at the end:",
    "",
    "| claim | arm | Δ at " + f"{fraction:.0%}" + " | Δ at the end | moved |",
    "|---|---|---|---|---|",
  ]
  moves = {}
  for claim in claims:
    at = lambda f: lambda r: 100 * at_fraction(r["curve"], f)
    early = effects.paired_difference(values(loaded["baseline"], at(fraction)), values(loaded[claim.arm], at(fraction)))
    end = effects.paired_difference(values(loaded["baseline"], at(1.0)), values(loaded[claim.arm], at(1.0)))
    if end.n:
      moves[claim.number] = end.mean - early.mean
      lines.append(
        f"| {claim.number} | {claim.arm} | {fmt_interval(early)} | {fmt_interval(end)} | {moves[claim.number]:+.2f} |"
      )
  own = [abs(late_change(r["curve"], 1 - fraction)) for rs in loaded.values() for r in rs if not r["failed"]]
  if moves and own:
    largest = max(moves, key=lambda k: abs(moves[k]))
    still = np.mean(own) >= CONVERGED_POINTS
    lines += [
      "",
      f"Over the last {1 - fraction:.0%} of the epochs the claims' mean Δ moved by at most "
      f"{abs(moves[largest]):.2f} points (claim {largest}), the trained runs' own errors by "
      f"{np.mean(own):.2f} points on average"
      + (
        ": the runs were still improving at the end, and the verdicts are those of this budget, not of converged runs."
        if still
        else "."
      ),
    ]
  return lines + [""]


def signed_or_dash(value: float) -> str:
  """'+1.23', or '–' where there is no value (a run that diverged before two evaluations has no trend)."""
  return f"{value:+.2f}" if math.isfinite(value) else "–"


def trained_cell(result) -> str:
  """'yes', 'no', or 'no (<why it stopped>)' for a run that non-finite losses stopped."""
  if not result["failed"]:
    return "yes"
  diverged = result["summary"].get("diverged")
  return f"no ({diverged})" if diverged else "no"


def per_seed_section(arms, loaded) -> List[str]:
  lines = [
    "## Every run",
    "",
    "| arm | seed | top-1 | top-5 | top-1 (10-crop) | top-5 (10-crop) | train top-1 | trained | wall min |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for arm in arms:
    for r in loaded[arm.name]:
      f = r["final"]
      cell = lambda k: f"{100 * f[k]:.2f}" if k in f else "–"
      lines.append(
        f"| {arm.name} | {r['seed']} | {cell('eval/top1_error')} | {cell('eval/top5_error')} | "
        f"{cell('eval_ten_crop/top1_error')} | {cell('eval_ten_crop/top5_error')} | "
        f"{cell('train_eval/top1_error')} | {trained_cell(r)} | "
        f"{r['wall_time_s'] / 60:.1f} |"
      )
  return lines + [""]


# ------------------------------------------------------------------------------------------ findings


def claim_phrase(claim, loaded) -> str:
  """'claim 3 (LRN: +1.2 [+0.1, +2.3] points of ..., 5 seeds)', with the error Δ beside a gap."""
  interval = claim_effect(claim, loaded)
  text = f"claim {claim.number} ({claim.topic}: {fmt_interval(interval, 1)} {UNITS[claim.measured_by]}"
  if claim.measured_by == "gap":
    error = effects.paired_difference(values(loaded["baseline"], PRIMARY), values(loaded[claim.arm], PRIMARY))
    text += f", and {fmt_interval(error, 1)} of 10-crop top-1 error"
  threshold = speed_threshold(loaded["baseline"])
  if claim.measured_by == "epochs" and threshold is not None:
    ratio = epochs_effect(loaded["baseline"], loaded[claim.arm], threshold)[2]
    text += f" to {100 * threshold:.0f}% training error" + (f", {ratio:.2f}x ReLU's" if math.isfinite(ratio) else "")
  val_threshold = speed_threshold(loaded["baseline"], curve="curve")
  if claim.epochs_too and val_threshold is not None:
    _, delta, ratio = epochs_effect(loaded["baseline"], loaded[claim.arm], val_threshold, curve="curve")
    if math.isfinite(ratio) and ratio:
      text += (
        f"; the baseline needs {1 / ratio:.2f}x the epochs to {100 * val_threshold:.0f}% validation error "
        f"(Δ {fmt_interval(delta, 1)} epochs without the component)"
      )
  return text + f", {count(interval.n, 'seed')})"


def findings(arms, claims, loaded) -> str:
  """The study's findings in detail: every claim's Δ grouped by verdict, the runs that did not train and
  figure 3's reading."""
  from experiments import study_controls  # it reads this module's measures

  done, planned = sum(len(loaded[a.name]) for a in arms), sum(a.seeds for a in arms)
  groups: Dict[str, List[str]] = {}
  for claim in claims:
    verdict = effects.verdict(claim_effect(claim, loaded), paper_sign(claim))
    groups.setdefault(verdict, []).append(claim_phrase(claim, loaded))
  c = loaded["baseline"][0]["summary"]["config"] if loaded["baseline"] else None
  scale = (
    f"at {c['augment']['crop_size']} px crops, x{c['model']['width_multiplier']:g} width and "
    f"{c['num_epochs']:g} epochs on Imagenette"
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
  diffs = tower_differences(loaded)
  two, one = effects.t_interval(diffs["baseline"].values()), effects.t_interval(diffs["one_tower"].values())
  sentences.append("Figure 3: " + kernels_reading(two, one, diffs))
  sentences.append("The controls: " + study_controls.readings(loaded))
  return " ".join(sentences)


def disagreements(claims, loaded) -> List[str]:
  """Where the measurements go against the paper: a reversed verdict, an error that falls where the paper
  says it rises, or an effect whose interval excludes the paper's or the later anchors' size."""
  out = []
  for claim in claims:
    own = claim_effect(claim, loaded)
    if effects.verdict(own, paper_sign(claim)) == "reversed":
      out.append(
        f"{claim.topic} goes the other way (claim {claim.number}: {fmt_interval(own, 1)} {UNITS[claim.measured_by]})"
      )
    error = effects.paired_difference(values(loaded["baseline"], PRIMARY), values(loaded[claim.arm], PRIMARY))
    if effects.verdict(error, paper_sign(claim)) == "too few seeds":
      continue
    if claim.measured_by != "error" and error.high < 0:
      out.append(
        f"without {claim.topic} the 10-crop top-1 error is lower, not higher (claim {claim.number}: "
        f"{fmt_interval(error, 1)} points at this budget)"
      )
    if claim.measured_by != "error":
      continue
    sizes = (("the paper's", (claim.paper_effect or (None,))[0]), ("the later anchors'", claim.anchor_effect))
    outside = [
      f"{'larger' if size < error.low else 'smaller'} than {whose} ({size:+.1f})"
      for whose, size in sizes
      if size is not None and not error.low <= size <= error.high
    ]
    if outside:
      out.append(
        f"the effect of {claim.topic} (claim {claim.number}: {fmt_interval(error, 1)} points) is "
        + " and ".join(outside)
      )
  return out


def headline(arms, claims, loaded, other=None) -> str:
  """The study in three sentences: the verdicts, where it disagrees with the paper, and what the budget
  leaves open (with `other`, the same study at another budget: how far the baseline moved between them).
  Heads the report's findings and, by `study.py --readme`, the repository README's."""
  from experiments import study_controls  # it reads this module's measures

  done, planned = sum(len(loaded[a.name]) for a in arms), sum(a.seeds for a in arms)
  by_verdict: Dict[str, List[str]] = {}
  for claim in claims:
    interval = claim_effect(claim, loaded)
    verdict = effects.verdict(interval, paper_sign(claim))
    how = "" if claim.measured_by == "error" else f", on the {UNITS[claim.measured_by].replace('points of ', '')}"
    threshold = speed_threshold(loaded["baseline"])
    ratio = epochs_effect(loaded["baseline"], loaded[claim.arm], threshold)[2] if threshold is not None else math.nan
    if claim.measured_by == "epochs" and math.isfinite(ratio):
      how += f": {ratio:.2f}x the baseline's"
    if verdict == "not detected":
      how += f"; could hide ±{interval.largest_hidden():.1f}"
    by_verdict.setdefault(verdict, []).append(f"{claim.topic} ({claim.number}{how})")
  order = ("confirmed", "reversed", "not detected", "too few seeds")
  counts = [f"{len(by_verdict[k])} {k}: {', '.join(by_verdict[k])}" for k in order if k in by_verdict]
  seeds = sorted({len(loaded[c.arm]) for c in claims} | {len(loaded["baseline"])})
  seed_range = count(seeds[-1], "seed") if seeds[0] == seeds[-1] else f"{seeds[0]}-{seeds[-1]} seeds"
  epochs = run_epochs(loaded["baseline"])
  first = (
    f"Of the paper's {len(claims)} claims, measured at a CPU scale (Imagenette, {epochs} epochs, {done} of "
    f"{planned} runs, {seed_range} per claim, seed-paired 95% t intervals of the 10-crop "
    f"top-1 error unless named), " + "; ".join(counts) + "."
  )
  against = disagreements(claims, loaded)
  diffs = tower_differences(loaded)
  two, one = effects.t_interval(diffs["baseline"].values()), effects.t_interval(diffs["one_tower"].values())
  if two.n >= 2 and one.n >= 2 and not two.low > one.high:
    against.append("figure 3's colour specialisation of the towers is not reproduced")
  second = (
    ("Where it differs from the paper or later work: " + "; ".join(against) + ".")
    if against
    else "Nothing measured differs from the paper or later work."
  )
  second += " What LRN's effect is: " + study_controls.lrn_reading(*study_controls.lrn_intervals(loaded))
  flat, trained = flat_counts(loaded)
  if trained and flat == trained:
    third = (
      f"All {trained} trained runs were flat over their last 20% of epochs (validation error within "
      f"{CONVERGED_POINTS:g} point): by that criterion these are converged runs."
    )
  else:
    third = (
      f"{flat} of {trained} trained runs were flat over their last 20% of epochs: these are the verdicts "
      f"of a {epochs}-epoch budget, not of converged runs (the report has every number)."
    )
  if other is not None:
    from experiments import study_budget

    third = " ".join(filter(None, [third, study_budget.sentence(loaded, other)]))
  return " ".join([first, second, third])


def findings_section(arms, claims, loaded, summary: str) -> List[str]:
  return ["## Findings", "", summary, "", findings(arms, claims, loaded), ""]


# ------------------------------------------------------------------------------------------ figures


def trained_rows(loaded, names: Sequence[str], field: str = "curve") -> List[dict]:
  """ablate.plot_curves's rows: per arm name, the `field` curves of its seeds that trained."""
  return [{"config": n, "_curves": [r[field] for r in loaded.get(n, []) if not r["failed"]]} for n in names]


DID_NOT_TRAIN_STYLE = {"color": "grey", "linestyle": ":", "marker": "x", "markersize": 3}


def draw_arm_panel(ax, loaded, name: str) -> None:
  """One panel of curves.png: validation error per epoch of the baseline and of the arm over the seeds
  that trained (mean and range), and each of the arm's runs that did not train on its own line, so that
  a failure shows instead of leaving the panel as if the arm had not run."""
  if name != "baseline":
    ablate.plot_curves(ax, trained_rows(loaded, ["baseline"]))
  ablate.plot_curves(ax, trained_rows(loaded, [name]))
  failed = [r for r in loaded.get(name, []) if r["failed"]]
  for r in failed:
    ax.plot([p[0] for p in r["curve"]], [100 * p[1] for p in r["curve"]], **DID_NOT_TRAIN_STYLE)
  runs = len(loaded.get(name, []))
  ax.set_title(f"{name} ({len(failed)} of {runs} did not train)" if failed else name, fontsize=9)


def write_figures(report_dir: str, arms, claims, loaded) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5))
  ablate.plot_curves(ax, trained_rows(loaded, ["baseline", "tanh"], "train_curve"))
  threshold = speed_threshold(loaded["baseline"])
  if threshold is not None:
    ax.axhline(100 * threshold, color="grey", ls="--", lw=0.8, label="threshold")
  ax.set(xlabel="epoch", ylabel="training top-1 error (%, as logged)", title="ReLU (baseline) against tanh")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(report_dir, "figure1_relu_tanh.png"), dpi=110)
  plt.close(fig)

  legend = [
    plt.Line2D([], [], color="C0", label="baseline"),
    plt.Line2D([], [], color="C1", label="the panel's arm (mean, seeds' range)"),
    plt.Line2D([], [], **DID_NOT_TRAIN_STYLE, label="a run that did not train"),
  ]
  draw = lambda ax, name: draw_arm_panel(ax, loaded, name)
  save_curve_panels(plt, os.path.join(report_dir, "curves.png"), [a.name for a in arms], draw, legend=legend)

  plot_effects(plt, os.path.join(report_dir, "effects.png"), claims, loaded)

  with_kernels = [r for r in loaded["baseline"] if r["kernels"] is not None]
  if not with_kernels:
    return
  first = with_kernels[0]
  fig, ax = plt.subplots(figsize=(6, 5))
  ax.imshow(kernels.tile(first["kernels"], towers=2, columns=6), interpolation="nearest")
  ax.set_title(f"conv1 kernels, baseline seed {first['seed']}: tower 1 above, tower 2 below", fontsize=9)
  ax.axis("off")
  fig.tight_layout()
  fig.savefig(os.path.join(report_dir, "figure3_conv1_kernels.png"), dpi=110)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(8, 4))
  ticks = []
  for name in ("baseline", "one_tower"):
    for r in loaded.get(name, []):
      if r["kernels"] is None:
        continue
      for t, half in enumerate(kernels.tower_halves(r["kernels"], 2)):
        x = len(ticks)
        share = kernels.colour_share(half)
        ax.scatter(np.full(share.shape, x), share, s=10, alpha=0.6, color="C0" if name == "baseline" else "C1")
        ticks.append(f"{'tower' if name == 'baseline' else 'half'} {t + 1}\n{name} s{r['seed']}")
  ax.set_xticks(range(len(ticks)), ticks, fontsize=6)
  ax.set_ylabel("colour share per conv1 kernel")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(report_dir, "figure3_colour_share.png"), dpi=110)
  plt.close(fig)


def save_curve_panels(plt, path: str, names: Sequence[str], draw, cols: int = 4, legend=()) -> None:
  """One panel per name (`draw(ax, name)` fills it) in a grid of up to `cols` columns on shared axes of
  validation error against epoch, saved to `path`: curves.png and study_budget's budget_curves.png.
  `legend`: line handles for one legend above the panels."""
  cols = min(cols, len(names))
  grid_rows = -(-len(names) // cols)
  fig, axes = plt.subplots(
    grid_rows, cols, figsize=(3.5 * cols, 3 * grid_rows), sharex=True, sharey=True, squeeze=False
  )
  for ax, name in zip(axes.flat, names):
    draw(ax, name)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(names) :]:
    ax.axis("off")
  fig.supxlabel("epoch")
  fig.supylabel("validation top-1 error (%, centre)")
  if legend:
    fig.legend(handles=list(legend), loc="upper center", ncol=len(legend), fontsize=9, frameon=False)
  fig.tight_layout(rect=(0, 0, 1, 0.97) if legend else None)
  fig.savefig(path, dpi=90)
  plt.close(fig)


def plot_effects(plt, path: str, claims, loaded) -> None:
  """effects.png: per claim and control arm, the seed-paired Δ of the 10-crop top-1 error with its 95%
  interval, each seed's own difference as a dot, and the paper's top-1 effect where it gives one."""
  from experiments import study_controls  # it reads this module's measures

  rows = [(f"{c.number}: {c.topic}", c.arm, (c.paper_effect or (None,))[0]) for c in claims]
  rows += [(f"control: {name}", name, None) for name in study_controls.CONTROLS]
  fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.2))
  base = values(loaded["baseline"], PRIMARY)
  for y, (label, arm, paper) in enumerate(rows):
    ablated = values(loaded.get(arm, []), PRIMARY)
    seeds = sorted(set(base) & set(ablated))
    interval = effects.paired_difference(base, ablated)
    ax.scatter([ablated[s] - base[s] for s in seeds], [y] * len(seeds), s=12, color="C0", alpha=0.5, zorder=2)
    if interval.n >= 2:
      ax.errorbar(
        interval.mean,
        y,
        xerr=[[interval.mean - interval.low], [interval.high - interval.mean]],
        fmt="o",
        color="C0",
        capsize=3,
        zorder=3,
      )
    elif not seeds:  # say why a row has no interval, instead of leaving it blank
      runs = loaded.get(arm, [])
      failed = sum(r["failed"] for r in runs)
      note = f"{failed} of {len(runs)} did not train" if failed else ("no runs yet" if not runs else "")
      ax.annotate(note, (0, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7, color="grey")
    if paper is not None:
      ax.scatter([paper], [y], marker="|", s=200, color="black", zorder=4)
  ax.axvline(0, color="grey", lw=0.8)
  ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
  ax.set_ylim(len(rows) - 0.5, -0.5)  # every row, the first on top, annotated ones included
  ax.set_xlabel("Δ 10-crop top-1 error over the baseline (points): mean, 95% t interval, seeds; | paper")
  ax.grid(alpha=0.3, axis="x")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# ------------------------------------------------------------------------------------------ the report


def write_report(
  report_dir: str,
  arms,
  claims,
  *,
  command: Optional[str] = None,
  invocation_s: Optional[float] = None,
  compare_to: str = "",
) -> str:
  """Writes the report and its figures into report_dir from its runs; returns the report's headline.
  `compare_to`: the report folder of the same study at another budget (experiments/study_budget.py)."""
  from experiments import study_budget, study_controls  # they read this module's measures

  os.makedirs(report_dir, exist_ok=True)
  loaded = load_all(report_dir, arms)
  other = load_all(compare_to, arms) if compare_to else None
  write_figures(report_dir, arms, claims, loaded)
  if other is not None:
    study_budget.plot(report_dir, arms, loaded, other)
  lines = [
    "# The paper's claims, measured",
    "",
    "Generated by `python -m experiments.study` (experiments/study_report.py) from the runs under "
    "`runs/`; do not edit by hand.",
    "",
  ]
  lines += status_section(arms, loaded)
  summary = headline(arms, claims, loaded, other)
  lines += findings_section(arms, claims, loaded, summary)
  lines += setup_section(loaded, command, invocation_s)
  lines += departures_section(loaded)
  lines += claims_section(claims, loaded)
  lines += overfitting_section(claims, loaded)
  lines += speed_section(claims, loaded)
  lines += study_controls.lrn_section(loaded)
  lines += study_controls.towers_section(loaded)
  lines += study_controls.dropout_section(loaded)
  lines += kernels_section(loaded, report_dir)
  lines += convergence_section(arms, claims, loaded)
  if other is not None:
    lines += study_budget.section(arms, claims, loaded, other, os.path.relpath(compare_to, report_dir))
  lines += per_seed_section(arms, loaded)
  with open(os.path.join(report_dir, "README.md"), "w") as f:
    f.write("\n".join(lines))
  return summary
