"""The study report's figures: figure 1's and figure 3's analogues, the validation curves of every arm,
and each claim's and control's Δ with its interval.

matplotlib is imported only when a figure is drawn: the runs and the report's tables never need it.
"""

import os
from typing import List, Sequence

import numpy as np

from alexnet_jax.analysis import ablate, effects, kernels, plots
from experiments.study import controls, measures


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
  """Draws figure 1's and figure 3's analogues, curves.png and effects.png into report_dir.

  Args:
    report_dir: the report folder.
    arms: the study's arms (one panel of curves.png each).
    claims: the paper's claims (one row of effects.png each).
    loaded: {arm name: its finished runs} (measures.load_all).
  """
  plt = plots.pyplot()

  fig, ax = plt.subplots(figsize=(7, 4.5))
  ablate.plot_curves(ax, trained_rows(loaded, ["baseline", "tanh"], "train_curve"))
  threshold = measures.speed_threshold(loaded["baseline"])
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
  draw_figure3(plt, report_dir, loaded)


def draw_figure3(plt, report_dir: str, loaded) -> None:
  """figure3_conv1_kernels.png (the first baseline run's conv1 kernels, one tower per block of rows) and
  figure3_colour_share.png (each kernel's colour share per tower, and per half of the one-tower net's);
  neither before a baseline run with kernels has finished."""
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
  validation error against epoch, saved to `path`: curves.png and budget's budget_curves.png.
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
  rows = [(f"{c.number}: {c.topic}", c.arm, (c.paper_effect or (None,))[0]) for c in claims]
  rows += [(f"control: {name}", name, None) for name in controls.CONTROLS if name in loaded]
  fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.2))
  base = measures.values(loaded["baseline"], measures.PRIMARY)
  for y, (label, arm, paper) in enumerate(rows):
    ablated = measures.values(loaded.get(arm, []), measures.PRIMARY)
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
