"""Using a trained network: a workdir's model and weights, its class scores and any layer's features.

    net = inference.load("/tmp/alexnet_smoke")             # the latest checkpoint, or step=N
    logits = net.logits(images)                            # uint8 [B, S, S, 3], S = net.image_size
    fc7 = net.features(images, layer="fc7")                # [B, 4096 x width]: figure 4's features
    images = np.stack([net.fit(photo) for photo in photos])  # any size -> S x S, as the data was stored

Images go through the evaluation's own preprocessing (augment.eval_preprocess: the stored size, the device
resize, the centre crop or the paper's 10 crops, mean and scale), so `logits` scores an image exactly as
evaluation does. Features are the layers' outputs after their activation, read from the model's sown
intermediates: neither the parameters nor the training path change.
"""

import dataclasses
import json
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from alexnet_jax import configlib
from alexnet_jax.data import augment, preprocess, sources
from alexnet_jax.model import build

# Layer name -> the model's sown intermediate: conv layers after their activation (before LRN and pooling).
LAYERS = {
  "conv1": "relu1",
  "conv2": "relu2",
  "conv3": "relu3",
  "conv4": "relu4",
  "conv5": "relu5",
  "fc6": "relu6",
  "fc7": "relu7",
}
# The repository's config file: its defaults complete the config of a run trained before a key existed.
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FILE = os.path.join(REPOSITORY, "configs", "alexnet.py")
BATCH = 64  # images per call of the jitted function; the last batch is padded, so it compiles once


class InferenceError(ValueError):
  """A workdir, image or layer that cannot be used: the message says what to do."""


@dataclasses.dataclass
class Network:
  config: ml_collections.ConfigDict
  model: object
  params: dict
  class_names: Sequence[str]
  image_size: int
  step: int

  def fit(self, image: np.ndarray) -> np.ndarray:
    """An RGB uint8 image of any size brought to the stored size: shorter side, then the centre (section 2)."""
    return sources.fit_to_size(np.asarray(image, np.uint8), self.image_size)

  def _preprocess(self, views: str):
    if views not in augment.EVAL_VIEWS:
      raise InferenceError(f"Unknown views {views!r}: use one of {list(augment.EVAL_VIEWS)}.")
    return preprocess.eval_preprocessor(self.config, views)

  def logits(self, images, views: str = "center") -> np.ndarray:
    """Class scores [B, classes]; `ten_crop` returns the log of the 10 views' mean softmax, as evaluation
    scores them."""
    preprocess = self._preprocess(views)

    def scores(params, images):
      batch = preprocess({"image": images})
      x = batch["image"]
      if x.ndim == 5:
        logits = self.model.apply({"params": params}, x.reshape((-1,) + x.shape[2:]), train=False)
        probs = jax.nn.softmax(logits).reshape(x.shape[0], x.shape[1], -1).mean(axis=1)
        return jnp.log(probs)
      return self.model.apply({"params": params}, x, train=False)

    return self._batched(jax.jit(scores), images)

  def features(self, images, layer: str = "fc7") -> np.ndarray:
    """The outputs of `layer` (one of LAYERS) for the centre view of each image."""
    if layer not in LAYERS:
      raise InferenceError(f"Unknown layer {layer!r}: use one of {list(LAYERS)}.")
    preprocess = self._preprocess("center")

    def outputs(params, images):
      x = preprocess({"image": images})["image"]
      _, state = self.model.apply({"params": params}, x, train=False, mutable=["intermediates"])
      return state["intermediates"][LAYERS[layer]][0].astype(jnp.float32)

    return self._batched(jax.jit(outputs), images)

  def _batched(self, fn, images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
      raise InferenceError(
        f"Expected uint8 images [B, {self.image_size}, {self.image_size}, 3] (the stored "
        f"size), got {images.dtype} {images.shape}: bring each through Network.fit first."
      )
    out = []
    for start in range(0, len(images), BATCH):
      chunk = images[start : start + BATCH]
      padded = np.concatenate([chunk, np.zeros((BATCH - len(chunk),) + chunk.shape[1:], np.uint8)])
      out.append(np.asarray(fn(self.params, padded))[: len(chunk)])
    return np.concatenate(out)


def latest_step(workdir: str, step: Optional[int] = None) -> int:
  root = os.path.join(workdir, "checkpoints")
  steps_there = sorted(int(p) for p in os.listdir(root) if p.isdigit()) if os.path.isdir(root) else []
  if not steps_there:
    raise InferenceError(
      f"{workdir} holds no checkpoint (expected {root}/<step>/): train there first, or give the workdir of a run."
    )
  if step is None:
    return steps_there[-1]
  if step not in steps_there:
    raise InferenceError(f"{root} has no checkpoint at step {step}: it has {steps_there}.")
  return step


def class_names(config, num_classes: int) -> list:
  """The dataset's class names (its prepared metadata), or 'class <i>' where the dataset is not here."""
  try:
    names = list(sources.dataset_info(os.path.expanduser(config.dataset.data_dir), config.dataset.name).class_names)
  except sources.DatasetError:
    names = []
  return names if len(names) == num_classes else [f"class {i}" for i in range(num_classes)]


def load(workdir: str, step: Optional[int] = None) -> Network:
  """The network of a training workdir (its config.json and a checkpoint: the latest, or `step`)."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise InferenceError(f"{workdir} has no config.json: give the --workdir of a training run.")
  with open(path) as f:
    config = with_defaults(json.load(f))
  step = latest_step(workdir, step)
  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
  params = jax.tree_util.tree_map(jnp.asarray, state["params"])
  image_size = config.dataset.image_size or stored_size(config)
  return Network(
    config,
    build.from_config(config.model),
    params,
    class_names(config, config.model.num_classes),
    int(image_size),
    step,
  )


def with_defaults(stored: dict) -> ml_collections.ConfigDict:
  """A run's stored config over the current defaults: keys added since it was trained take their
  defaults, which keep the behaviour it was trained with."""

  def merge(base, new):
    for key, value in new.items():
      base[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base

  return ml_collections.ConfigDict(merge(configlib.load_config(CONFIG_FILE).to_dict(), stored))


def stored_size(config) -> int:
  """The side of the images the run's loader gave the device, read from the prepared dataset."""
  try:
    size = sources.dataset_info(os.path.expanduser(config.dataset.data_dir), config.dataset.name).image_size
  except sources.DatasetError as e:
    raise InferenceError(
      f"The run read {config.dataset.name!r} at its stored size, and that dataset is not here to say what it was ({e})."
    ) from None
  if not size:
    raise InferenceError(
      f"{config.dataset.name!r} holds images of varied sizes and the run set no "
      f"dataset.image_size: the size its images were brought to is unknown."
    )
  return size
