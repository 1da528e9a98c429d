"""Using a trained network: a workdir's model and weights, its class scores and any layer's features.

    net = inference.load("/tmp/alexnet_smoke")             # the latest checkpoint, or step=N
    logits = net.logits(images)                            # uint8 [B, S, S, 3], S = net.image_size
    fc7 = net.features(images, layer="fc7")                # [B, 4096 x width]: figure 4's features
    images = np.stack([net.fit(photo) for photo in photos])  # any size -> S x S, as the dataset stores them

Images go through the evaluation's own preprocessing (augment.eval_preprocess: the stored size, the device
resize, the centre crop or the paper's 10 crops, mean and scale), so `logits` scores an image exactly as
evaluation does. Features are the layers' outputs after their activation, read from the model's sown
intermediates: neither the parameters nor the training path change.
"""

import dataclasses
import json
import os
import shlex
from typing import Optional, Sequence

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from alexnet_jax import configlib, paths
from alexnet_jax.data import augment, prepare, preprocess, sources
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
BATCH = 64  # images per call of the jitted function; the last batch is padded, so it compiles once


class InferenceError(ValueError):
  """A workdir, image or layer that cannot be used: the message says what to do."""


@dataclasses.dataclass
class Network:
  """A trained network and what it takes to use it; `load` makes one.

  Attributes:
    config: the run's config, completed by the current defaults (`with_defaults`).
    model: the AlexNet module `config.model` describes.
    params: the checkpoint's parameter tree (jax arrays).
    class_names: `num_classes` names, in class-index order (`class_names`).
    image_size: S, the side of the uint8 images `logits` and `features` take: the run's
      `dataset.image_size`, or the prepared dataset's stored size.
    step: the checkpoint's train step.
    squash: N where the run's dataset was made squashed to N x N first (`squash_side`), else 0.
  """

  config: ml_collections.ConfigDict
  model: object
  params: dict
  class_names: Sequence[str]
  image_size: int
  step: int
  squash: int = 0

  def fit(self, image: np.ndarray) -> np.ndarray:
    """An RGB image of any size brought to the stored size as the run's images were: squashed to N x N
    first where they were (`squash`), then shorter side to S and the centre (section 2).

    Args:
      image: uint8 [H, W, 3] (other dtypes are converted to uint8).

    Returns:
      uint8 [S, S, 3], S = `image_size`.
    """
    image_format = prepare.ImageFormat(image_size=self.image_size, squash=self.squash)
    return image_format.resize(np.asarray(image, np.uint8))

  def _preprocess(self, views: str):
    if views not in augment.EVAL_VIEWS:
      raise InferenceError(f"Unknown views {views!r}: use one of {list(augment.EVAL_VIEWS)}.")
    return preprocess.eval_preprocessor(self.config, views)

  def logits(self, images, views: str = "center") -> np.ndarray:
    """The class scores of `images`, preprocessed as evaluation does.

    Args:
      images: uint8 [B, S, S, 3], S = `image_size` (see `fit`).
      views: 'center' (the logits of the centre crop) or 'ten_crop' (the log of the paper's 10 views' mean
        softmax, section 4.1, as evaluation scores them).

    Returns:
      float32 numpy [B, num_classes].

    Raises:
      InferenceError: `views` is unknown, or `images` is not uint8 [B, S, S, 3].
    """
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
    """The outputs of `layer` after its activation, for the centre view of each image.

    Args:
      images: uint8 [B, S, S, 3], S = `image_size` (see `fit`).
      layer: one of LAYERS, 'conv1' ... 'conv5', 'fc6', 'fc7'.

    Returns:
      float32 numpy [B, h, w, channels] for a conv layer (before LRN and pooling), [B, units] for fc6 and
      fc7.

    Raises:
      InferenceError: `layer` is unknown, or `images` is not uint8 [B, S, S, 3].
    """
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
  """The step of a workdir's checkpoint: the newest, or `step` after checking it is there.

  Args:
    workdir: a training run's --workdir (checkpoints in `<workdir>/checkpoints/<step>/`).
    step: the step wanted, or None for the newest.

  Returns:
    The step.

  Raises:
    InferenceError: the workdir holds no checkpoint, or none at `step`.
  """
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
  """The dataset's class names (its prepared metadata), or 'class <i>' where they are not available.

  Args:
    config: a run's config (its `dataset.data_dir` and `dataset.name` are read).
    num_classes: the model's classes.

  Returns:
    num_classes names; 'class 0', 'class 1', ... where the dataset is not here or its number of names
    differs.
  """
  try:
    names = list(sources.dataset_info(os.path.expanduser(config.dataset.data_dir), config.dataset.name).class_names)
  except sources.DatasetError:
    names = []
  return names if len(names) == num_classes else [f"class {i}" for i in range(num_classes)]


def load(workdir: str, step: Optional[int] = None) -> Network:
  """The network of a training workdir: its config.json and a checkpoint (the latest, or `step`).

  Args:
    workdir: a training run's --workdir (`~` is expanded).
    step: the checkpoint's step, or None for the newest.

  Returns:
    The Network, parameters on the default device.

  Raises:
    InferenceError: the workdir has no config.json or no such checkpoint, or the image size the run used
      cannot be known (`stored_size`).
  """
  workdir = paths.absolute(workdir)
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
    squash_side(config),
  )


def squash_side(config) -> int:
  """N where the run's dataset is made squashed to N x N, aspect ratio not kept, before it is fitted (the
  `--squash` of its `dataset.prepare_args`: the study's Imagenette and Imagewoof), else 0 (also where those
  flags do not parse: nothing is known of a squash)."""
  try:
    return prepare.parse_flags(shlex.split(config.dataset.get("prepare_args", ""))).squash
  except (flags.Error, ValueError):
    return 0


def with_defaults(stored: dict) -> ml_collections.ConfigDict:
  """A run's stored config over the repository's defaults (configs/alexnet.py).

  A key the stored config lacks takes the value its behaviour had before the key existed: its default, or
  where that changed, configlib.VALUES_BEFORE_THE_KEY's.

  Args:
    stored: the run's config.json as a dict.

  Returns:
    The merged config; stored values win, nested sections merged key by key.
  """

  def merge(base, new):
    for key, value in new.items():
      base[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base

  defaults = configlib.load_config(paths.CONFIG_FILE).to_dict()
  return ml_collections.ConfigDict(merge(defaults, configlib.as_made(stored)))


def stored_size(config) -> int:
  """The side of the images the run's loader gave the device, read from the prepared dataset.

  Args:
    config: a run's config whose `dataset.image_size` is unset.

  Returns:
    The side in pixels.

  Raises:
    InferenceError: the dataset is not prepared here, or holds images of varied sizes.
  """
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
