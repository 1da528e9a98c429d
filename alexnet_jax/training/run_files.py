"""What a run writes into its workdir besides checkpoints and metrics: `config.json` (and
`config.resumed_at_<step>.json` where a resume changed it), `summary.json` when it finishes, `diverged.json`
when non-finite losses stop it, `eval.json` for an evaluation-only run. All are plain JSON (non-finite
floats as null), each replaced atomically."""

import json
import math
import os

from absl import logging
import jax

from alexnet_jax.model import models
from alexnet_jax.training import loop, metrics_io, run_setup


def json_safe(value):
  """`value` with every non-finite float as None: standard JSON has no Infinity or NaN."""
  if isinstance(value, dict):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_json(path, value):
  """`value` as JSON at `path`, written beside it first so that a kill leaves the old file or the new one."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(json_safe(value), f, indent=2, default=str, allow_nan=False)
  os.replace(tmp, path)


def finished_summary(workdir: str, step: int, total_steps: int):
  """The summary of a run that already reached `total_steps` (None when it has not, or wrote none)."""
  path = os.path.join(workdir, "summary.json")
  if step < total_steps or not os.path.exists(path):
    return None
  with open(path) as f:
    summary = json.load(f)
  return summary if summary.get("step") == step else None


def save_config(config, workdir, resumed_step):
  """config.json of the first run is kept; a resume under a different config is recorded beside it."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort())
  if not os.path.exists(path):
    write_json(path, current)
    return
  with open(path) as f:
    original = json.load(f)
  if original != current:
    other = os.path.join(workdir, f"config.resumed_at_{resumed_step}.json")
    logging.warning("Resuming with a config that differs from %s; recording it in %s.", path, other)
    write_json(other, current)


def summarise(
  run: run_setup.Setup, state, step: int, preempted, final: dict, progress: loop.Progress, wall_time_s
) -> dict:
  """summary.json's content: where the run stopped (`preempted`: the signal's name, or None), its final and
  best errors, its time (every segment's, for a resumed run), the machine and the config."""
  summary = {
    "step": step,
    "total_steps": run.total_steps,
    "epochs": step / run.steps_per_epoch,
    "preempted": preempted,
    "final": final,
    "best": progress.best,
    "train_time_s": progress.train_time_s,
    "wall_time_s": wall_time_s,
    "train_images_per_sec": progress.images_seen / max(progress.train_time_s, 1e-9),
    "devices": jax.device_count(),
    "device_kind": jax.devices()[0].device_kind,
    "jax_version": jax.__version__,
    "parameters": models.param_count(state.params),
    "config": json.loads(run.config.to_json_best_effort()),
  }
  if run.config.optim.schedule == "plateau":
    summary["plateau"] = progress.plateau
  return summary


def write_divergence(run: run_setup.Setup, summary: dict, problem: str) -> None:
  """`diverged.json`: the summary of a run that stopped at `problem` (its `final` is empty: a network with
  non-finite weights has no error worth evaluating). summary.json, if a shorter run wrote one, is kept."""
  write_json(os.path.join(run.workdir, metrics_io.DIVERGED_FILE), {**summary, "diverged": problem})
