r"""Ablation sweeps in one command: a grid of config overrides x seeds, each run in its own workdir, and a
paper-style results table with plots.

    python -m alexnet_jax.ablate --config=configs/alexnet.py:imagenette --workdir=~/runs/ablation \
        --sweep='model.use_lrn=True,False;model.overlapping_pool=True,False' --seeds=3

The default sweep is the paper's two ablations (section 3.3: LRN, section 3.4: overlapping pooling), 2x2.
The first value of each axis is the baseline. Each run is `python -m alexnet_jax.main` in
`<workdir>/runs/<name>/seed<k>`: a finished run (summary.json present) is skipped, and so is one that
diverged (diverged.json: reported as a run that did not train); an interrupted one resumes from its
checkpoint, so a killed sweep continues where it stopped; a workdir whose runs were made with another
config (other --set values, say) is refused rather than mixed in. `--parallel=N` runs N at
once: with `--gpus=G` each run gets one of G GPUs, otherwise they share the GPUs and each gets a share of
their memory. Results: results.csv, results.md, curves.png, ablation.png in the workdir; where some runs
fail, those of the finished ones, marked partial (exit status 1).
"""

import csv
import json
import math
import os
import sys
import time
from typing import Dict, List, Mapping, Sequence

from absl import flags
import numpy as np

from alexnet_jax import configlib, paths
from alexnet_jax.analysis import effects, plots, sweep

FLAGS = flags.FLAGS

DEFAULT_SWEEP = "model.use_lrn=True,False;model.overlapping_pool=True,False"
# The paper's reported effects of removing each component, in points of (top-1, top-5) error
# (section 3.3: "Response normalization reduces our top-1 and top-5 error rates by 1.4% and 1.2%";
#  section 3.4: overlapping pooling "reduces the top-1 and top-5 error rates by 0.4% and 0.3%").
PAPER_EFFECTS = {("model.use_lrn", False): (1.4, 1.2), ("model.overlapping_pool", False): (0.4, 0.3)}
METRICS = ("eval/top1_error", "eval/top5_error", "eval_ten_crop/top1_error", "eval_ten_crop/top5_error")


def read_run(run: sweep.Run) -> dict:
  """A finished run's final errors, speed, classes and its curves: (epoch, validation top-1 error) and
  (epoch, training top-1 error) per record of metrics.jsonl."""
  with open(run.summary_path) as f:
    summary = json.load(f)
  curve, train_curve = [], []
  with open(os.path.join(run.workdir, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line)
      epoch = record.get("epoch", record["step"])
      if record["kind"] == "eval":
        curve.append((epoch, record["eval/top1_error"]))
      elif record["kind"] == "train":
        train_curve.append((epoch, record["train/top1_error"]))
  return {
    "seed": run.seed,
    "final": summary["final"],
    "images_per_sec": summary["train_images_per_sec"],
    "wall_time_s": summary["wall_time_s"],
    "num_classes": summary["config"]["model"]["num_classes"],
    "curve": curve,
    "train_curve": train_curve,
  }


def mean_std(values):
  values = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
  if not len(values):
    return float("nan"), float("nan"), 0
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan"), len(values)


def per_seed(results: Sequence[dict], metric: str) -> Dict[int, float]:
  """{seed: metric in percent} over the runs that trained (effects.did_not_train)."""
  return {r["seed"]: 100 * r["final"].get(metric, float("nan")) for r in results if not r["failed"]}


def paper_effect(point: Mapping[str, object], baseline_point: Mapping[str, object]):
  """The paper's (top-1, top-5) effect of the components a configuration removes, summed; None when the
  paper reports none for one of them (or nothing is removed)."""
  changed = [(k, v) for k, v in point.items() if v != baseline_point.get(k)]
  effects = [PAPER_EFFECTS.get(c) for c in changed]
  if not changed or not all(effects):
    return None
  return tuple(sum(e[i] for e in effects) for i in (0, 1))


def aggregate(runs: List[sweep.Run], baseline_name: str, baseline_point: Mapping[str, object]) -> List[dict]:
  """One row per configuration: mean and std over the seeds that trained, the runs that did not, and each
  metric's seed-paired difference to the baseline with its 95% t interval (effects.py)."""
  by_name: Dict[str, List[dict]] = {}
  points: Dict[str, dict] = {}
  for run in runs:
    if run.done:
      result = read_run(run)
      result["failed"] = effects.did_not_train(
        result["final"].get("eval/top1_error", float("nan")), result["num_classes"]
      )
      by_name.setdefault(run.name, []).append(result)
      points[run.name] = run.point
  base = by_name.get(baseline_name)
  rows = []
  for name, results in by_name.items():
    row = {
      "config": name,
      "seeds": len(results),
      "did not train": ",".join(str(r["seed"]) for r in results if r["failed"]),
    }
    for metric in METRICS:
      values = per_seed(results, metric)
      row[f"{metric} mean"], row[f"{metric} std"], _ = mean_std(values.values())
      row[f"{metric} per seed"] = " ".join(f"{s}:{v:.2f}" for s, v in sorted(values.items()))
      if base is not None:
        interval = effects.paired_difference(per_seed(base, metric), values)
        row[f"{metric} diff"], row[f"{metric} diff low"], row[f"{metric} diff high"] = (
          interval.mean,
          interval.low,
          interval.high,
        )
        row[f"{metric} pairs"] = interval.n
    row["images_per_sec"] = mean_std([r["images_per_sec"] for r in results])[0]
    row["wall_time_s"] = mean_std([r["wall_time_s"] for r in results])[0]
    paper = paper_effect(points[name], baseline_point)
    row["paper effect top1/top5"] = f"+{paper[0]:g}/+{paper[1]:g}" if paper else ""
    row["_paper"] = paper
    row["_curves"] = [r["curve"] for r in results]
    row["_train_curves"] = [r["train_curve"] for r in results]
    rows.append(row)
  rows.sort(key=lambda r: (r["config"] != baseline_name, r["config"]))
  return rows


def _fmt(mean, std):
  if not math.isfinite(mean):
    return "–"
  return f"{mean:.2f} ± {std:.2f}" if math.isfinite(std) else f"{mean:.2f}"


def format_difference(row: Mapping[str, object], metric: str) -> str:
  """'+2.00 [+1.10, +2.90]': the paired mean difference and its 95% interval; the mean alone for one pair."""
  mean = row.get(f"{metric} diff", float("nan"))
  if not math.isfinite(mean):
    return "–"
  low, high = row[f"{metric} diff low"], row[f"{metric} diff high"]
  if not math.isfinite(low):
    return f"{mean:+.2f} (1 pair)"
  return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def write_results(workdir: str, rows: List[dict], header_lines: Sequence[str]) -> None:
  columns = [k for k in rows[0] if not k.startswith("_")]
  with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: row.get(k, "") for k in columns})
  lines = list(header_lines) + [
    "",
    "Errors in percent: mean ± std over the seeds that trained. Δ: the seed-paired difference to the "
    "baseline (first row), mean [95% t interval] over the seeds both trained. Did not train: seeds whose final "
    "top-1 accuracy stayed under 1.5x chance, left out of means and differences. Paper: the increase in error "
    "the paper reports for removing that component (section 3.3 / 3.4).",
    "",
    "| config | seeds | did not train | top-1 (centre) | top-5 (centre) | top-1 (10-crop) | top-5 (10-crop) "
    "| Δ top-1 | Δ top-5 | Δ top-1 (10-crop) | paper Δ top-1/top-5 | images/s | wall s |",
    "|" + "---|" * 13,
  ]
  for r in rows:
    m = lambda k: _fmt(r[f"{k} mean"], r[f"{k} std"])
    d = lambda k: format_difference(r, k)
    lines.append(
      f"| {r['config']} | {r['seeds']} | {r['did not train'] or '–'} | {m('eval/top1_error')} | "
      f"{m('eval/top5_error')} | {m('eval_ten_crop/top1_error')} | {m('eval_ten_crop/top5_error')} | "
      f"{d('eval/top1_error')} | {d('eval/top5_error')} | {d('eval_ten_crop/top1_error')} | "
      f"{r['paper effect top1/top5'] or '–'} | {r['images_per_sec']:.0f} | {r['wall_time_s']:.0f} |"
    )
  lines += ["", "Per seed (seed:top-1 error, centre):", ""]
  lines += [f"- {r['config']}: {r['eval/top1_error per seed'] or '–'}" for r in rows]
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def plot_curves(ax, rows: Sequence[dict], key: str = "_curves") -> None:
  """Per configuration: the mean error per epoch over its seeds, and the band from the lowest to the
  highest seed (the spread, so one seed that did not train shows)."""
  for row in rows:
    curves = [c for c in row[key] if c]
    if not curves:
      continue
    length = min(len(c) for c in curves)
    epochs = [p[0] for p in curves[0][:length]]
    errors = np.asarray([[100 * p[1] for p in c[:length]] for c in curves])
    (line,) = ax.plot(epochs, errors.mean(axis=0), marker="o", markersize=2, label=row["config"])
    if len(curves) > 1:
      ax.fill_between(epochs, errors.min(axis=0), errors.max(axis=0), color=line.get_color(), alpha=0.15)


def plot(workdir: str, rows: List[dict], baseline: str) -> None:
  """curves.png: validation error per epoch of every configuration (mean and seed range); ablation.png:
  each configuration's seed-paired difference to `baseline` (95% interval) beside the paper's."""
  plt = plots.pyplot()

  fig, ax = plt.subplots(figsize=(7, 4.5))
  plot_curves(ax, rows)
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation top-1 error (%, centre crop)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "curves.png"), dpi=120)
  plt.close(fig)

  has_baseline = rows[0]["config"] == baseline
  others = rows[1:] if has_baseline else rows  # without a finished baseline there are no differences
  fig, ax = plt.subplots(figsize=(7, 4.5))
  x = np.arange(len(others))
  for offset, key, label in ((-0.2, "eval/top1_error", "top-1"), (0.2, "eval/top5_error", "top-5")):
    diffs = np.asarray([r.get(f"{key} diff", np.nan) for r in others], np.float64)
    low = np.asarray([r.get(f"{key} diff low", np.nan) for r in others], np.float64)
    high = np.asarray([r.get(f"{key} diff high", np.nan) for r in others], np.float64)
    errs = np.nan_to_num(np.stack([diffs - low, high - diffs]))
    ax.bar(x + offset, diffs, 0.4, yerr=errs, capsize=4, label=f"measured Δ {label} (95% CI)")
  for i, r in enumerate(others):
    if r["_paper"]:
      ax.scatter(
        [i - 0.2, i + 0.2], r["_paper"], color="black", marker="_", s=400, zorder=3, label="paper" if i == 0 else None
      )
  ax.axhline(0, color="grey", lw=0.8)
  ax.set_xticks(x, [r["config"] for r in others], rotation=15, fontsize=8)
  ax.set_ylabel("error increase over the baseline (points)")
  ax.set_title(f"baseline: {baseline}" + ("" if has_baseline else " (no finished run: no differences)"))
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "ablation.png"), dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  workdir = paths.absolute(FLAGS.workdir)
  try:
    sweep.check_counts(FLAGS.seeds, FLAGS.parallel, FLAGS.gpus)
    axes = sweep.parse_sweep(FLAGS.sweep)
    sweep.validate(FLAGS.config, axes, FLAGS.set)
    runs = sweep.plan(workdir, axes, FLAGS.seeds)
    sweep.check_existing_runs(runs, FLAGS.config, FLAGS.set)
  except configlib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  os.makedirs(workdir, exist_ok=True)
  started = time.time()
  failure = None
  try:
    sweep.execute(runs, FLAGS.config, FLAGS.set, FLAGS.parallel, FLAGS.gpus)
  except RuntimeError as e:  # some runs failed: the finished ones are still reported, marked partial
    failure = e
  baseline_point = {k: v[0] for k, v in axes}
  rows = aggregate(runs, sweep.run_name(baseline_point), baseline_point)
  if rows:
    header = [
      f"# Ablation: {FLAGS.config}",
      "",
      f"Command: `python -m alexnet_jax.ablate --config={FLAGS.config} --sweep='{FLAGS.sweep}' "
      f"--seeds={FLAGS.seeds}" + "".join(f" --set={s}" for s in FLAGS.set) + "`",
      f"Runs: {len(runs)}; this invocation took {time.time() - started:.0f} s.",
    ]
    if failure:
      header += [
        "",
        f"**Partial results**: {sum(r.done for r in runs)} of {len(runs)} runs finished; the table "
        f"holds only those. {failure}",
      ]
    write_results(workdir, rows, header)
    plot(workdir, rows, sweep.run_name(baseline_point))
    print(open(os.path.join(workdir, "results.md")).read())
  if failure:
    print(f"error: {failure}", file=sys.stderr)
    sys.exit(1)


def define_flags() -> None:
  """The command line of `python -m alexnet_jax.ablate`."""
  flags.DEFINE_string("config", "configs/alexnet.py:imagenette", "Config file and arg, as for alexnet_jax.main.")
  flags.DEFINE_string(
    "workdir", None, "The sweep's folder: runs/<point>/seed<k> (e.g. use_lrn=False), results.*, *.png.", required=True
  )
  flags.DEFINE_string("sweep", DEFAULT_SWEEP, "Axes 'key=v1,v2;key=v1,v2'; the first value is the baseline.")
  flags.DEFINE_integer("seeds", 3, "Seeds per configuration.")
  flags.DEFINE_multi_string("set", [], "Extra key=value overrides applied to every run (e.g. num_epochs=5).")
  flags.DEFINE_integer("parallel", 1, "Runs at once.")
  flags.DEFINE_integer(
    "gpus",
    0,
    "GPUs to spread parallel runs over, one GPU per run (CUDA_VISIBLE_DEVICES); "
    "0: every run sees every GPU, with a share of its memory.",
  )
