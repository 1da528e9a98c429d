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
import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from absl import flags
import numpy as np

from alexnet_jax import configlib
from alexnet_jax.analysis import effects, plots
from alexnet_jax.training import metrics_io

FLAGS = flags.FLAGS

DEFAULT_SWEEP = "model.use_lrn=True,False;model.overlapping_pool=True,False"
# The paper's reported effects of removing each component, in points of (top-1, top-5) error
# (section 3.3: "Response normalization reduces our top-1 and top-5 error rates by 1.4% and 1.2%";
#  section 3.4: overlapping pooling "reduces the top-1 and top-5 error rates by 0.4% and 0.3%").
PAPER_EFFECTS = {("model.use_lrn", False): (1.4, 1.2), ("model.overlapping_pool", False): (0.4, 0.3)}
METRICS = ("eval/top1_error", "eval/top5_error", "eval_ten_crop/top1_error", "eval_ten_crop/top5_error")


def parse_sweep(text: str) -> List[Tuple[str, list]]:
  """'a.b=1,2;c=x,y' -> [('a.b', [1, 2]), ('c', ['x', 'y'])]."""
  axes = []
  for part in (p.strip() for p in text.split(";") if p.strip()):
    if "=" not in part:
      raise configlib.ConfigError(f"Sweep axis {part!r} must look like key=value1,value2.")
    key, values = part.split("=", 1)
    parsed = [configlib.parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not parsed:
      raise configlib.ConfigError(f"Sweep axis {key!r} has no values.")
    axes.append((key.strip(), parsed))
  return axes


def grid(axes) -> List[Dict[str, object]]:
  return [dict(zip([k for k, _ in axes], values)) for values in itertools.product(*[v for _, v in axes])]


def run_name(point: Dict[str, object]) -> str:
  return ",".join(f"{k.split('.')[-1]}={v}" for k, v in point.items()) or "baseline"


def check_counts(seeds: int, parallel: int, gpus: int) -> None:
  """--seeds and --parallel of at least 1 (0 would run nothing, or wait forever), --gpus of at least 0."""
  for flag, value, least in (("seeds", seeds, 1), ("parallel", parallel, 1), ("gpus", gpus, 0)):
    if value < least:
      raise configlib.ConfigError(f"--{flag}={value}: use {least} or more.")


def run_config(spec: str, overrides: Sequence[str], point: Dict[str, object], seed: Optional[int] = None):
  """The config one run of the sweep trains: the file's get_config(arg), the --set overrides, the point's
  values, and the seed, applied in the order `Run.command` passes them to main."""
  config = configlib.load_config(spec)
  for item in overrides:
    key, _, value = item.partition("=")
    configlib.set_path(config, key, configlib.parse_value(value))
  for key, value in point.items():
    configlib.set_path(config, key, value)
  if seed is not None:
    configlib.set_path(config, "seed", seed)
  return config


def validate(spec: str, axes, overrides: Sequence[str]) -> None:
  """Applies every override and sweep value to the config before anything runs: a typo fails now."""
  for point in grid(axes) or [{}]:
    run_config(spec, overrides, point)


# Keys that say how to make the dataset, not what a run computes: a run is the same run after they change.
NOT_RESULT_KEYS = ("dataset.prepare_args",)


def config_differences(stored, intended, prefix: str = "", defaults=None) -> List[str]:
  """'key: stored -> intended' for every leaf where two JSON config trees differ.

  Args:
    stored: the config a run was made with (its config.json).
    intended: the config the run would be given now.
    prefix: the dotted path of these trees within the whole config.
    defaults: the config without the run's own overrides. A key that `stored` lacks (it was added to the
      config after the run was made, defaulting to the old behaviour) does not differ where `intended`
      gives it that default. Keys in NOT_RESULT_KEYS never differ.

  Returns:
    One line per differing leaf, in key order.
  """
  if isinstance(stored, dict) and isinstance(intended, dict):
    found = []
    defaults = defaults if isinstance(defaults, dict) else {}
    for key in sorted(set(stored) | set(intended)):
      path = f"{prefix}.{key}" if prefix else str(key)
      added_later = key not in stored and key in defaults and intended.get(key) == defaults[key]
      if path in NOT_RESULT_KEYS or added_later:
        continue
      if key not in stored or key not in intended:
        found.append(f"{path}: {stored.get(key, '(absent)')!r} -> {intended.get(key, '(absent)')!r}")
      else:
        found += config_differences(stored[key], intended[key], path, defaults.get(key))
    return found
  return [] if stored == intended else [f"{prefix}: {stored!r} -> {intended!r}"]


def check_existing_runs(runs: Sequence["Run"], spec: str, overrides: Sequence[str]) -> None:
  """Refuses a workdir whose run folders hold runs of another config.

  A finished run is skipped and an interrupted one resumed, so a sweep re-run with other --set values or
  another config into the same workdir would report the old runs' results under the new command (and main
  would resume a half-run under a mixed config). Each run's config.json (written by main when it starts)
  is compared with the config this sweep would give it; nothing is run or written when any differs."""
  stale = []
  defaults = json.loads(run_config(spec, overrides, {}).to_json_best_effort())
  for run in runs:
    path = os.path.join(run.workdir, "config.json")
    if not os.path.exists(path):
      continue
    try:
      with open(path) as f:
        stored = configlib.as_made(json.load(f))
    except (OSError, ValueError) as e:
      raise configlib.ConfigError(f"Cannot read {path} ({e}): move {run.workdir} aside and run again.") from None
    intended = json.loads(run_config(spec, overrides, run.point, run.seed).to_json_best_effort())
    differences = config_differences(stored, intended, defaults=defaults)
    if differences:
      stale.append((run, differences))
  if stale:
    run, differences = stale[0]
    raise configlib.ConfigError(
      f"{len(stale)} of the sweep's run folders hold runs of another config; this sweep would report their "
      f"results as its own. E.g. {run.workdir}: {'; '.join(differences[:4])}"
      f"{' ...' if len(differences) > 4 else ''}. Use a new --workdir, or move the old runs aside; "
      f"nothing was run or changed."
    )


@dataclasses.dataclass
class Run:
  name: str
  point: Dict[str, object]
  seed: int
  workdir: str

  @property
  def summary_path(self) -> str:
    """summary.json of a finished run, else diverged.json of one that diverged (train.write_divergence)."""
    finished = os.path.join(self.workdir, "summary.json")
    return finished if os.path.exists(finished) else os.path.join(self.workdir, metrics_io.DIVERGED_FILE)

  @property
  def done(self) -> bool:
    """Finished or diverged: either is a result (a diverged run reports as one that did not train)."""
    return os.path.exists(self.summary_path)

  @property
  def diverged(self) -> bool:
    return os.path.basename(self.summary_path) == metrics_io.DIVERGED_FILE and self.done

  def command(self, spec: str, overrides: Sequence[str]) -> List[str]:
    flags_ = [f"--config.{item}" for item in overrides]
    flags_ += [f"--config.{k}={v}" for k, v in self.point.items()] + [f"--config.seed={self.seed}"]
    return [sys.executable, "-m", "alexnet_jax.main", f"--config={spec}", f"--workdir={self.workdir}"] + flags_


def plan(workdir: str, axes, seeds: int) -> List[Run]:
  return [
    Run(run_name(p), p, s, os.path.join(workdir, "runs", run_name(p), f"seed{s}"))
    for p in grid(axes)
    for s in range(seeds)
  ]


def runs_per_gpu(parallel: int, gpus: int) -> int:
  """How many runs share one GPU's memory at most: each gets its own with --gpus >= --parallel; with
  --gpus=0 or 1 every run sees the same GPU(s)."""
  return max(1, math.ceil(parallel / gpus) if gpus > 1 else parallel)


def least_busy_gpu(busy: Sequence[int], gpus: int) -> int:
  """The GPU (of 0..gpus-1) running the fewest of the `busy` runs' GPUs; the lowest such index."""
  return min(range(gpus), key=list(busy).count)


def run_environment(base: Mapping[str, str], gpu: Optional[int], parallel: int, gpus: int) -> Dict[str, str]:
  """The environment of one run: its GPU (`gpu` of --gpus), and, where runs share a GPU, a share of its
  memory. JAX preallocates 75% of a GPU's memory per process, so a second process on the same GPU would
  fail to allocate; each gets 0.9 / (runs per GPU) instead, unless the user set JAX's memory variables."""
  env = dict(base)
  if gpu is not None:
    env["CUDA_VISIBLE_DEVICES"] = str(gpu)
  sharing = runs_per_gpu(parallel, gpus)
  if sharing > 1 and not any(
    k in base
    for k in ("XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_ALLOCATOR")
  ):
    env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / sharing:.2f}"
  return env


def execute(runs: List[Run], spec: str, overrides: Sequence[str], parallel: int, gpus: int) -> None:
  """Runs what is not finished, `parallel` at a time, each new run on the GPU with the fewest running
  (with --gpus > 1); each run's output goes to its workdir's run.log."""
  todo = [r for r in runs if not r.done]
  for r in runs:
    if r.done:
      print(f"skip {r.name} seed {r.seed}: {'diverged' if r.diverged else 'finished'} ({r.summary_path})")
  active: List[Tuple[Run, subprocess.Popen, object, Optional[int]]] = []
  failed = []
  while todo or active:
    while todo and len(active) < parallel:
      run = todo.pop(0)
      os.makedirs(run.workdir, exist_ok=True)
      log = open(os.path.join(run.workdir, "run.log"), "a")
      gpu = None
      if parallel > 1 and gpus > 1:
        gpu = least_busy_gpu([g for _, _, _, g in active], gpus)
      print(
        f"run  {run.name} seed {run.seed} -> {run.workdir}" + (f" (GPU {gpu})" if gpu is not None else ""), flush=True
      )
      process = subprocess.Popen(
        run.command(spec, overrides), stdout=log, stderr=log, env=run_environment(os.environ, gpu, parallel, gpus)
      )
      active.append((run, process, log, gpu))
    time.sleep(0.5)
    for item in list(active):
      run, process, log, _ = item
      if process.poll() is not None:
        log.close()
        active.remove(item)
        if run.diverged:
          print(f"DIVERGED {run.name} seed {run.seed}: a result, reported as a run that did not train", flush=True)
        elif process.returncode != 0 or not run.done:
          failed.append(run)
          print(f"FAILED {run.name} seed {run.seed} (exit {process.returncode}): see {run.workdir}/run.log", flush=True)
  if failed:
    raise RuntimeError(
      f"{len(failed)} run(s) failed; re-run the same command to retry them "
      f"(finished runs are kept): {[f'{r.name}/seed{r.seed}' for r in failed]}"
    )


# ------------------------------------------------------------------------------------------ results


def read_run(run: Run) -> dict:
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


def aggregate(runs: List[Run], baseline_name: str, baseline_point: Mapping[str, object]) -> List[dict]:
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
  workdir = os.path.abspath(os.path.expanduser(FLAGS.workdir))
  try:
    check_counts(FLAGS.seeds, FLAGS.parallel, FLAGS.gpus)
    axes = parse_sweep(FLAGS.sweep)
    validate(FLAGS.config, axes, FLAGS.set)
    runs = plan(workdir, axes, FLAGS.seeds)
    check_existing_runs(runs, FLAGS.config, FLAGS.set)
  except configlib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  os.makedirs(workdir, exist_ok=True)
  started = time.time()
  failure = None
  try:
    execute(runs, FLAGS.config, FLAGS.set, FLAGS.parallel, FLAGS.gpus)
  except RuntimeError as e:  # some runs failed: the finished ones are still reported, marked partial
    failure = e
  baseline_point = {k: v[0] for k, v in axes}
  rows = aggregate(runs, run_name(baseline_point), baseline_point)
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
    plot(workdir, rows, run_name(baseline_point))
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
