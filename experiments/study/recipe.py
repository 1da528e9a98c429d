"""The study report's description of its set-up: the data, the network, the runs, and how the recipe
departs from the paper's section 5.

The facts come from the runs' own summary.json (their configs, devices and versions), so the description
cannot drift from what was run.
"""

import math
import os
import platform
from typing import List

import numpy as np

from alexnet_jax import configlib
from alexnet_jax.analysis import effects
from experiments.study import arms as arms_lib
from experiments.study import controls
from experiments.study import formatting as fmt
from experiments.study import measures


def setup_section(loaded, command, invocation_s, data: arms_lib.Data = arms_lib.IMAGENETTE) -> List[str]:
  """The setup section: the data, the network, the runs' times and machine, and the command.

  Args:
    loaded: {arm name: its finished runs} (measures.load_all).
    command: the command line that made the runs, or None.
    invocation_s: how long that command ran, or None.
    data: the dataset's facts.

  Returns:
    The section's Markdown lines.
  """
  summaries = [r["summary"] for results in loaded.values() for r in results]
  lines = ["## Setup", ""]
  if not summaries:
    return lines + ["No run has finished yet.", ""]
  base = summaries[0]["config"]
  walls = [r["wall_time_s"] for results in loaded.values() for r in results]
  resumed = sum(r["segments"] > 1 for results in loaded.values() for r in results)
  rates = [s["train_images_per_sec"] for s in summaries]
  lines += [
    f"- Data: `{base['dataset']['name']}` ({data.title}, {data.content}: {data.train_images:,} training and "
    f"{data.val_images:,} validation photos at 128 px; how they were made: Reproduce, below), resized to "
    f"{base['augment']['resize_to']} on the device, {base['augment']['crop_size']}x{base['augment']['crop_size']} "
    f"crops (the paper's 227 / 256 ratio).",
    f"- Network: preset `{base['model']['preset']}` at width x{base['model']['width_multiplier']} "
    f"({summaries[0]['parameters']:,} parameters in the baseline), batch {base['batch_size']}, "
    f"{base['num_epochs']:g} epochs, lr {base['optim']['learning_rate']} ({base['optim']['schedule']}, "
    f"{base['optim']['warmup_epochs']} warm-up epochs), momentum {base['optim']['momentum']}, weight decay "
    f"{base['optim']['weight_decay']} ({base['optim']['weight_decay_mode']}), init `{base['model']['init_scheme']}`.",
    f"- Runs: {len(summaries)} finished, {np.mean(walls) / 60:.1f} min each on average "
    f"({min(walls) / 60:.1f}-{max(walls) / 60:.1f}), {np.mean(rates):.0f} training images/s; device "
    f"`{summaries[0]['device_kind']}` x{summaries[0]['devices']}, jax {summaries[0]['jax_version']}. The "
    f"wall times include other work that shared the machine"
    + (
      f", and every segment of the {'run' if resumed == 1 else f'{resumed} runs'} that "
      f"{'was' if resumed == 1 else 'were'} interrupted and resumed."
      if resumed
      else "."
    ),
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


# The arms that try section 5's initialisation, and the inputs each gave it.
INIT_ARMS = (
  ("paper_init", "on the study's inputs, divided by ImageNet's std"),
  ("paper_init_raw", "on inputs with only the mean subtracted, the paper's scale"),
)


def init_evidence(loaded) -> str:
  """What the study shows of the paper's initialisation, N(0, 0.01) with biases of 1: how each of
  INIT_ARMS ended, where this study runs it."""
  parts = []
  for arm, inputs in INIT_ARMS:
    if arm not in loaded:
      continue
    ended = ", ".join(
      f"{100 * r['final'].get('eval/top1_error', math.nan):.1f}% (seed {r['seed']}, "
      f"{'did not train' if r['failed'] else 'trained'})"
      for r in loaded[arm]
    )
    parts.append(f"`{arm}` ({inputs}) ended at {ended}" if ended else f"`{arm}` ({inputs}) has not run yet")
  if not parts:
    return "the Imagenette study's `paper_init` and `paper_init_raw` arms (N(0, 0.01), biases of 1; its report)"
  return "N(0, 0.01) with biases of 1 at this geometry: " + "; ".join(parts)


def placement_effect(interval) -> str:
  """One measure's seed-paired change from the study's dropout placement to the paper's: the interval
  where it is detectable, else that none was detected and how large one could hide."""
  if effects.verdict(interval, None) == "too few seeds":
    return "too few seeds to tell"
  if interval.excludes_zero():
    return f"{fmt.fmt_interval(interval)} points"
  return f"no detectable amount (±{interval.largest_hidden():.1f})"


def dropout_reading(loaded) -> str:
  """What the `dropout_paper` arm (the paper's placement) changes from the baseline (torchvision's),
  seed-paired: the 10-crop error and the validation-training gap, and claim 7 (no_dropout's gap) measured
  against it, where no dropout has no placement to differ in; a clause without its full stop, '' before
  the arm has 2 seeds."""
  error = controls.paired(loaded, "baseline", "dropout_paper")
  if error.n < 2:
    return ""
  gap = controls.paired(loaded, "baseline", "dropout_paper", measures.gap)
  text = (
    f"the paper's placement changes the 10-crop top-1 error by {placement_effect(error)} and the "
    f"validation-training gap by {placement_effect(gap)}"
  )
  claim7 = controls.paired(loaded, "dropout_paper", "no_dropout", measures.gap)
  if claim7.n < 2:
    return text
  verdict = effects.verdict(claim7, 1.0)
  return text + f"; against it, claim 7's gap Δ is {fmt.fmt_interval(claim7, 1)} points ({verdict})"


def dropout_evidence(loaded) -> str:
  """The departures table's evidence for the study's dropout placement: the `dropout_paper` arm's reading."""
  why = "the code's placement when these runs were made"
  if "dropout_paper" not in loaded:
    return f"{why}; the Imagenette study's `dropout_paper` arm measures its effect (its report)"
  if not loaded["dropout_paper"]:
    return f"{why}; the `dropout_paper` arm (the paper's placement) measures its effect and has not run yet"
  centre = controls.paired(loaded, "baseline", "dropout_paper", "eval/top1_error")
  measured = dropout_reading(loaded) or "one seed so far, too few to judge"
  return f"{why}; {measured} (`dropout_paper` minus the baseline; centre-crop error {fmt.fmt_interval(centre)})"


def data_rows(c, data: arms_lib.Data):
  """The departures table's rows on the data: the dataset, its images and crops, the input statistics."""
  a = c["augment"]
  scaled = " and divided by ImageNet's per-channel std" if a.get("std_rgb") else ""
  return [
    (
      "ILSVRC-2012, 1000 classes, 1.2M images",
      f"{data.title}, 10 classes, {data.train_images:,} images",
      "a CPU budget; the errors are not comparable in level to the paper's, only the directions and sizes "
      "of the differences are",
    ),
    (
      "shorter side rescaled to 256, central 256x256 crop (section 2)",
      "fast.ai's photos squashed to 224x224 (the aspect ratio lost), then resized to 128 (Reproduce, below)",
      "the public copies the runs read were made so; not measured",
    ),
    (
      "256 px images, 227 (text: 224) crops",
      f"128 px photos resized to {a['resize_to']}, {a['crop_size']} crops",
      "the step rate on 2 CPU cores (geometry.json: the candidates timed by experiments/study/geometry.py); "
      "the same crop ratio and layer geometry",
    ),
    (
      "the training set's mean subtracted (section 2); PCA of its RGB values for the lighting (section 4.1)",
      f"ImageNet's per-channel mean subtracted{scaled}; ImageNet's published PCA",
      ("the std: He initialisation assumes inputs of unit variance; " if scaled else "")
      + "ImageNet's statistics for the training set's: Imagenette's own PCA is close to ImageNet's "
      "(alexnet_jax/data/stats.py); neither measured",
    ),
  ]


def network_rows(c, loaded):
  """The departures table's rows on the network and its training: width, schedule, init, batch, dropout."""
  m, o = c["model"], c["optim"]
  widths = "-".join(str(round(w * m["width_multiplier"])) for w in (96, 256, 384, 384, 256))
  rows = [
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
    ("N(0, 0.01) weights, biases 1 in conv2, 4, 5, fc6, 7", "He-normal weights, zero biases", init_evidence(loaded)),
    (
      "batch 128",
      f"batch {c['batch_size']}",
      "more steps per epoch on the small training set; not measured against 128",
    ),
  ]
  if m["dropout_placement"] != "fc6_fc7_outputs":
    rows.append(
      (
        "dropout on the outputs of fc6 and fc7 (section 4.2)",
        "on their inputs (pool5's and fc6's outputs), torchvision's placement",
        dropout_evidence(loaded),
      )
    )
  if m["dropout_scaling"] != "at_test":
    rows.append(
      (
        "kept units unscaled in training, outputs halved at test (section 4.2)",
        "kept units doubled in training, nothing at test (inverted dropout, torchvision's and Flax's)",
        "the code's scaling when these runs were made; the same test-time function, but the next layer's "
        "weights start at twice the paper's scale and take steps 4 times as large; not measured",
      )
    )
  return rows


def departures_section(loaded, data: arms_lib.Data = arms_lib.IMAGENETTE) -> List[str]:
  """Every way the study's recipe differs from section 5's, why, and the evidence where the study has it.

  Args:
    loaded: {arm name: its finished runs} (measures.load_all).
    data: the dataset's facts.

  Returns:
    The section's Markdown lines.
  """
  title = "## Departures from the paper's recipe (section 5)"
  finished = loaded.get("baseline", [])
  if not finished:
    return [title, "", "No baseline run has finished yet.", ""]
  c = configlib.as_made(finished[0]["summary"]["config"])
  rows = data_rows(c, data) + network_rows(c, loaded)
  lines = [
    title,
    "",
    "Weight decay is the paper's rule exactly (5e-4, coupled: the decay enters the momentum, on every "
    "parameter), and so are momentum 0.9, dropout's rate 0.5, LRN's constants, the crops, flips, PCA "
    "lighting's σ = 0.1 and the 10-crop test.",
    "",
    "| paper | study | why, and the evidence |",
    "|---|---|---|",
  ]
  lines += [f"| {paper} | {study} | {why} |" for paper, study, why in rows]
  return lines + [""]
