"""Section (b): end-to-end images/s of `train_and_evaluate` on a prepared dataset, beside the step and
decode limits measured in the same run."""

import json
import os
import tempfile

import numpy as np

from alexnet_jax import configlib
from alexnet_jax.data import pipeline
from alexnet_jax.training import train


def end_to_end(config_spec, data_dir, name, steps):
  """Images/s of `train_and_evaluate` for `steps` steps of `config_spec` on the prepared dataset `name`."""
  config = configlib.load_config(config_spec)  # as main and the sweeps load it
  config.dataset.update(data_dir=data_dir, name=name)
  config.update(
    num_train_steps=steps,
    log_every_steps=max(1, steps // 4),
    checkpoint_every_steps=10**9,
    eval_every_epochs=10**6,
    progress_bar=False,
  )
  config.augment.final_eval_views = "center"
  with tempfile.TemporaryDirectory() as workdir:
    summary = train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      perf = [json.loads(line)["perf/images_per_sec"] for line in f if '"perf"' in line]
  workers = config.dataset.num_workers
  # The first interval holds compilation: report the steady intervals.
  return {
    "config": config_spec,
    "dataset": name,
    "steps": steps,
    "img_s_steady": float(np.mean(perf[1:] or perf)),
    "img_s_all": summary["train_images_per_sec"],
    "preset": config.model.preset,
    "dtype": config.model.dtype,
    "batch": config.batch_size,
    "width": config.model.width_multiplier,
    "workers": pipeline.default_num_workers() if workers < 0 else workers,
  }


def end_to_end_against_limits(report):
  """The end-to-end target in numbers, from rows of the same run: end to end over the project step
  of the same preset, dtype, batch and width (synthetic batches on the device), and over the decode limit of
  the workers it used (workers x the one-core decode rate of the pipeline section: OpenCV's, and the project
  decoder's, the faster one)."""
  e2e = report["end_to_end"]
  step = next(
    (
      r
      for r in report.get("jax", [])
      if (r["preset"], r["dtype"], r["batch"], r["width"]) == (e2e["preset"], e2e["dtype"], e2e["batch"], e2e["width"])
      and r.get("step") == "pmap"
    ),
    None,
  )
  if step is not None:
    e2e["step_img_s"] = step["full_img_s"]
    e2e["over_step"] = e2e["img_s_steady"] / step["full_img_s"]
  decode = [r for r in report.get("pipeline", {}).get("pipeline", []) if r["workers"] == e2e["workers"]]
  if decode:
    e2e["decode_limit_img_s"] = e2e["workers"] * decode[0]["decode_one_core_img_s"]
    e2e["over_decode_limit"] = e2e["img_s_steady"] / e2e["decode_limit_img_s"]
    e2e["project_decode_limit_img_s"] = e2e["workers"] * decode[0]["decode_project_one_core_img_s"]
    e2e["over_project_decode_limit"] = e2e["img_s_steady"] / e2e["project_decode_limit_img_s"]
  return e2e
