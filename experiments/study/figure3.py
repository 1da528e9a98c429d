"""The study report's analogue of the paper's figure 3: do the two towers' conv1 kernels specialise in
colour?

Per run, the colour share of each tower's kernels (measures.specialisation); the control is the one-tower
net, whose two halves nothing sets apart, so the towers' difference is read against arbitrary halves'.
"""

import os
from typing import List

from alexnet_jax.analysis import effects
from experiments.study import formatting as fmt
from experiments.study import measures


def kernels_section(loaded, report_dir) -> List[str]:
  """Figure 3's section: each run's colour share per tower (or half), their difference and its reading.

  Args:
    loaded: {arm name: its finished runs} (measures.load_all).
    report_dir: the report folder (the figures are linked where they were drawn).

  Returns:
    The section's Markdown lines.
  """
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
        s = measures.specialisation(r["kernels"])
        lines.append(f"| {name} | {r['seed']} | {s['a']:.3f} | {s['b']:.3f} | {s['difference']:.3f} |")
  diffs = measures.tower_differences(loaded)
  two, one = effects.t_interval(diffs["baseline"].values()), effects.t_interval(diffs["one_tower"].values())
  lines += [
    "",
    f"Difference between the halves, mean [95% t interval]: two towers {fmt.fmt_interval(two, 3)}, "
    f"one-tower control {fmt.fmt_interval(one, 3)}. " + kernels_reading(two, one, diffs),
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


def kernels_reading(two, one, diffs) -> str:
  """Whether the towers specialise in colour, read against the one-tower net's arbitrary halves.

  Args:
    two: the t interval of the two-tower baseline's difference between its towers.
    one: the same for the one-tower control's halves.
    diffs: measures.tower_differences (the per-seed differences of both).

  Returns:
    One sentence.
  """
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
