r"""How long one study run takes at each candidate geometry: the project's train and eval steps, timed.

    python -m experiments.study.geometry --out=experiments/results/study/geometry.json

For each (crop, width, conv1_impl) the study config (`configs/alexnet.py:study` with those overrides) is
built as the trainer builds it, and its pmapped train step (augmentation included) and centre-view eval
step are timed on synthetic uint8 batches at the stored size (best of `--repeats` rounds). From the rates,
the minutes of one run of `--epochs` epochs (default: the config's) on Imagenette (9,469 training and
3,925 validation images, evaluated every epoch) follow, without the input pipeline (measured by
`python -m experiments.benchmark`).
"""

import json
import os
import platform
import time

from absl import flags
import jax
import numpy as np

from alexnet_jax import cli
from alexnet_jax.analysis import sweep
from alexnet_jax.data import preprocess
from alexnet_jax.model import build
from alexnet_jax.training import optim, steps

FLAGS = flags.FLAGS
TRAIN_IMAGES, VAL_IMAGES = 9469, 3925


def best_seconds(fn, warmup: int, calls: int, repeats: int) -> float:
  """Seconds per call of fn (which returns device values), best of `repeats` rounds of `calls` calls."""
  out = None
  for _ in range(warmup):
    out = fn()
  jax.block_until_ready(out)
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = fn()
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - start) / calls)
  return best


def measure(crop: int, width: float, conv1_impl: str) -> dict:
  """Times one candidate geometry's train and eval steps.

  Args:
    crop: the crop side (the device resizes to crop * 256 / 227 first).
    width: the width multiplier.
    conv1_impl: conv1's implementation.

  Returns:
    The candidate, its images per second in training and evaluation, and the minutes of one run.
  """
  overrides = {
    "augment.crop_size": crop,
    "augment.resize_to": round(crop * 256 / 227),
    "model.width_multiplier": width,
    "model.conv1_impl": conv1_impl,
  }
  config = sweep.run_config(FLAGS.config, [], overrides, seed=0)
  model = build.from_config(config.model)
  train_pre, eval_pre = preprocess.make_preprocessors(config)
  tx, _ = optim.create_optimizer(config, 100)
  state = steps.replicate(
    steps.create_train_state(jax.random.key(0), model, np.zeros((1, crop, crop, 3), np.float32), tx)
  )
  batch = config.batch_size
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch, 128, 128, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, (batch,), dtype=np.int32)
  train_batch = jax.device_put(steps.shard_batch({"image": images, "label": labels}))
  eval_batch = jax.device_put(steps.shard_batch({"image": images, "label": labels, "mask": np.ones(batch, np.float32)}))
  p_train = steps.pmap_train_step(preprocess=train_pre, donate=False)
  p_eval = steps.pmap_eval_step(preprocess=eval_pre["center"])
  key = jax.random.key(1)
  train_s = best_seconds(lambda: p_train(state, train_batch, key)[1], 2, FLAGS.calls, FLAGS.repeats)
  eval_s = best_seconds(lambda: p_eval(state, eval_batch), 2, FLAGS.calls, FLAGS.repeats)
  epoch_s = TRAIN_IMAGES / batch * train_s + VAL_IMAGES / batch * eval_s
  epochs = FLAGS.epochs or config.num_epochs
  return {
    "crop": crop,
    "width": width,
    "conv1_impl": conv1_impl,
    "batch": batch,
    "train_images_per_s": batch / train_s,
    "eval_images_per_s": batch / eval_s,
    "epochs": epochs,
    "run_minutes": epochs * epoch_s / 60,
  }


def main(argv):
  """Times every candidate of --crops x --widths x --conv1_impls and writes the record to --out."""
  del argv
  results = []
  for crop in FLAGS.crops:
    for width in FLAGS.widths:
      for impl in FLAGS.conv1_impls:
        row = measure(int(crop), float(width), impl)
        results.append(row)
        print(
          f"crop {row['crop']:3d} width {row['width']:.3f} {impl:14s} train {row['train_images_per_s']:6.0f} "
          f"img/s, eval {row['eval_images_per_s']:6.0f} img/s, {row['epochs']:g} epochs ~ "
          f"{row['run_minutes']:.1f} min",
          flush=True,
        )
  record = {
    "command": "python -m experiments.study.geometry "
    + " ".join(
      f"--{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
      for k, v in FLAGS.flag_values_dict().items()
      if k in ("config", "crops", "widths", "conv1_impls", "epochs", "calls", "repeats") and v is not None
    ),
    "machine": {
      "platform": platform.platform(),
      "processor": platform.processor(),
      "cores": os.cpu_count(),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "backend": jax.default_backend(),
    },
    "results": results,
  }
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(record, f, indent=2)


if __name__ == "__main__":
  flags.DEFINE_string("config", "configs/alexnet.py:study", "The study config the candidates change.")
  flags.DEFINE_list("crops", ["67", "83", "99"], "Crop sides (the device resizes to crop * 256 / 227 first).")
  flags.DEFINE_list("widths", ["0.25", "0.375"], "Width multipliers.")
  flags.DEFINE_list("conv1_impls", ["direct", "im2col"], "conv1 implementations.")
  flags.DEFINE_integer("epochs", None, "Epochs per run for the minutes column (default: the config's num_epochs).")
  flags.DEFINE_integer("calls", 8, "Steps per timed round.")
  flags.DEFINE_integer("repeats", 3, "Timed rounds (the best counts).")
  flags.DEFINE_string("out", "", "Where to write the JSON record.")
  cli.run(main)
