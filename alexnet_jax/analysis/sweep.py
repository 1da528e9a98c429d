"""The runs of a sweep: a grid of config overrides x seeds, each `python -m alexnet_jax.main` in its own
workdir, `<workdir>/runs/<name>/seed<k>`, launched N at a time and spread over GPUs.

A finished run (summary.json) or one that diverged (diverged.json) is skipped; an interrupted one resumes
from its checkpoint; a workdir whose runs were made with another config is refused before anything runs
(`check_existing_runs`). `alexnet_jax.analysis.ablate` reports the results; experiments/study uses the
same runs.
"""

import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from alexnet_jax import configlib
from alexnet_jax.training import metrics_io


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
    """summary.json of a finished run, else diverged.json of one that diverged (run_files.write_divergence)."""
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
