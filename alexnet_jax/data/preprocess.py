"""The training preprocess and the evaluation views a config asks for, as functions of a uint8 batch
(data.augment's, configured).

Training and the tools (inference, predict) both read a config's `augment` section the same way, so the
pixels a trained network is scored on are the pixels it saw in its final evaluation.
"""

import functools
import os

import jax.numpy as jnp
import numpy as np

from alexnet_jax import configlib
from alexnet_jax.data import augment


def mean_pixels(config) -> np.ndarray:
  """The mean subtracted from every pixel: the per-pixel mean image (section 2) where the config names one,
  else the per-channel `augment.mean_rgb`."""
  a = config.augment
  if not a.mean_image:
    return np.asarray(a.mean_rgb, np.float32)
  path = os.path.expanduser(a.mean_image)
  if not os.path.exists(path):
    raise configlib.ConfigError(
      f"augment.mean_image {path!r} does not exist: compute it with `python -m "
      f"alexnet_jax.data.stats --data_dir={config.dataset.data_dir} "
      f"--name={config.dataset.name}`, then set --config.augment.mean_image="
      f"{config.dataset.data_dir}/{config.dataset.name}.train_stats.json.mean_image.npy."
    )
  return np.load(path)


def view_names(spec: str) -> list:
  """'center, ten_crop' -> ['center', 'ten_crop']: the evaluation views a config string names."""
  return [v.strip() for v in spec.split(",") if v.strip()]


def eval_preprocessor(config, view: str, mean=None):
  """preprocess(batch) of evaluation view `view` ('center' or 'ten_crop') under `config.augment`.

  Args:
    config: a run's config (its `augment` section and `model.dtype` are read).
    view: one of `augment.EVAL_VIEWS`.
    mean: the mean pixels, where the caller has them already (else `mean_pixels(config)`).

  Returns:
    A function of a uint8 batch [B, H, W, 3] to the network's input views.
  """
  a = config.augment
  return functools.partial(
    augment.eval_preprocess,
    resize_to=a.resize_to or None,
    crop_size=a.crop_size,
    views=view,
    mean=mean_pixels(config) if mean is None else mean,
    std=tuple(a.std_rgb) or None,
    dtype=jnp.dtype(config.model.dtype),
  )


def make_preprocessors(config):
  """The train and evaluation preprocessing `config.augment` describes.

  Called before anything is written: a misspelt crop or view fails here, in one line, not in the final
  evaluation after hours of training.

  Args:
    config: a run's config.

  Returns:
    (train preprocess(batch, rng), {view name: eval preprocess(batch)}).

  Raises:
    configlib.ConfigError: an unknown crop or view, or a missing mean image.
  """
  a = config.augment
  for key in ("eval_views", "final_eval_views"):
    names = view_names(a[key])
    unknown = [v for v in names if v not in augment.EVAL_VIEWS]
    if unknown or "center" not in names:  # the centre view's error drives the plateau rule and `best`
      problem = f"unknown view(s) {unknown}" if unknown else "it needs 'center'"
      raise configlib.ConfigError(
        f"augment.{key}={a[key]!r}: {problem}. Give a comma-separated list of "
        f"{list(augment.EVAL_VIEWS)} that includes center, e.g. "
        f"--config.augment.{key}=center,ten_crop."
      )
  mean = mean_pixels(config)
  try:
    train = augment.train_preprocessor(
      resize_to=a.resize_to or None,
      crop_size=a.crop_size,
      crop=a.crop,
      flip=a.flip,
      pca_std=a.pca_std,
      eigval=tuple(a.eigval),
      eigvec=tuple(map(tuple, a.eigvec)),
      mean=mean,
      std=tuple(a.std_rgb) or None,
      dtype=jnp.dtype(config.model.dtype),
    )
  except ValueError as e:
    raise configlib.ConfigError(f"{e} Set --config.augment.crop=random (the paper's), inception or center.") from None
  views = set(view_names(a.eval_views)) | set(view_names(a.final_eval_views))
  return train, {v: eval_preprocessor(config, v, mean) for v in views}
