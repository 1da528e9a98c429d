"""How far the study's results transfer: its baseline's accuracy beside what others reached on the same data.

The study measures the paper's claims at a CPU scale (a quarter-width net on 67 px crops); its errors are
far from the best this data allows, and the geometry changes what the network sees. The section puts the
baseline's final accuracy beside fast.ai's leaderboard at the same image size (arms.Data.leaderboard) and
says, from the runs' config, what the crop size does to conv1's maps.
"""

from typing import List

from experiments.study import arms as arms_lib
from experiments.study import measures

PAPER_CROP, CONV1_KERNEL, CONV1_STRIDE = 227, 11, 4


def conv1_side(crop: int) -> int:
  """The side of conv1's output maps (VALID, 11x11 at stride 4) on a `crop`-pixel input: 55 at 227."""
  return (crop - CONV1_KERNEL) // CONV1_STRIDE + 1


def accuracy_cell(results, key: str) -> str:
  """'70.47 (69.9-71.0)': the mean top-1 accuracy (%) over the runs that trained and its range; '–' if none."""
  errors = list(measures.values(results, key).values())
  if not errors:
    return "–"
  accuracies = [100 - e for e in errors]
  return f"{sum(accuracies) / len(accuracies):.2f} ({min(accuracies):.1f}-{max(accuracies):.1f})"


def section(loaded, data: arms_lib.Data) -> List[str]:
  """The transfer section: the baseline's accuracy beside the leaderboard's, and what the geometry changes.

  Args:
    loaded: {arm name: its finished runs} (measures.load_all).
    data: the dataset's facts (its leaderboard).

  Returns:
    The section's Markdown lines; none before a baseline run has finished.
  """
  base = loaded.get("baseline", [])
  if not base:
    return []
  config = base[0]["summary"]["config"]
  crop, width = config["augment"]["crop_size"], config["model"]["width_multiplier"]
  epochs = config["num_epochs"]
  lines = [
    "## How far the results transfer",
    "",
    f"The baseline's top-1 accuracy on {data.short} (mean over the seeds that trained, and their range) beside "
    f"{arms_lib.LEADERBOARD_SOURCE}: the best ResNet-family nets there, by epochs.",
    "",
    "| net | epochs | top-1 accuracy (%) |",
    "|---|---|---|",
  ]
  lines += [f"| leaderboard: ResNet family, 128 px | {e} | {acc:.1f} |" for e, acc in sorted(data.leaderboard.items())]
  for what, key in (("centre crop", "eval/top1_error"), ("10 crops", measures.PRIMARY)):
    net = f"this study's baseline: AlexNet x{width:g}, {crop} px crops, {what}"
    lines.append(f"| {net} | {epochs:g} | {accuracy_cell(base, key)} |")
  side, paper = conv1_side(crop), conv1_side(PAPER_CROP)
  return lines + [
    "",
    f"What the {crop} px geometry changes: conv1's {CONV1_KERNEL}x{CONV1_KERNEL} kernels at stride {CONV1_STRIDE} "
    f"give {side}x{side} maps on a {crop} px crop where the paper's {PAPER_CROP} px give {paper}x{paper}, each "
    f"kernel spanning {CONV1_KERNEL / crop:.0%} of the crop's side instead of {CONV1_KERNEL / PAPER_CROP:.0%}; "
    f"the effects measured here are those of a net that sees coarse structure, and their sizes need not carry "
    f"over to the paper's scale, only their existence and direction at this one.",
    "",
  ]
