r"""Classify images with a trained network: the top classes of each image, with their probabilities.

    python -m alexnet_jax.tools.predict --workdir=/tmp/alexnet_smoke photo.jpg more.png a_folder/

loads the workdir's config and its latest checkpoint (or `--step`), or torchvision alexnet() weights
(`--torchvision_weights=PATH.pth --class_names=FILE`: the owt preset, to check the conversion on your own
photos), brings each image to the run's stored
size (shorter side, then the centre, as the dataset was prepared) and scores it as evaluation does (the
centre crop, or the paper's 10 crops with `--views=ten_crop`). Prints the top `--top` classes per image,
named as the dataset names them; `--json` prints one JSON object instead.
"""

import json
import os
import sys

from absl import flags
import numpy as np

from alexnet_jax import cli

FLAGS = flags.FLAGS
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_paths(arguments) -> list:
  """The files named, and the images directly inside each folder named, in sorted order."""
  paths = []
  for argument in arguments:
    if os.path.isdir(argument):
      paths += sorted(os.path.join(argument, f) for f in os.listdir(argument) if f.lower().endswith(IMAGE_SUFFIXES))
    else:
      paths.append(argument)
  return paths


def read_image(path: str) -> np.ndarray:
  from alexnet_jax.data import sources

  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ValueError(f"Cannot read {path!r} ({e.strerror}).") from None
  try:
    return sources.decode_image(data, path=path)
  except sources.DatasetError:
    raise ValueError(f"Cannot decode {path!r} as an image (JPEG, PNG, ...).") from None


def top_classes(logits: np.ndarray, names, k: int) -> list:
  """[(name, probability)] of the k most probable classes, from one image's scores."""
  probs = np.exp(logits - logits.max())
  probs /= probs.sum()
  order = np.argsort(-probs, kind="stable")[:k]
  return [(names[i], float(probs[i])) for i in order]


def torchvision_network(weights_path: str, names_path: str = ""):
  """A network from a torchvision `alexnet()` state_dict file (`torch.save(model.state_dict(), PATH)`): the
  owt preset, evaluated as torchvision's recipe is (shorter side 256, the 224 centre, ImageNet's mean and
  std); class names from `names_path` (one per line, in class order), else 'class <i>'."""
  import jax
  import jax.numpy as jnp
  from alexnet_jax import configlib
  from alexnet_jax.model import build
  from alexnet_jax.tools import convert, inference

  try:
    import torch
  except ImportError:
    raise ValueError("--torchvision_weights needs PyTorch: .venv/bin/pip install torch") from None
  try:
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    params = convert.torchvision_to_flax(state_dict)["params"]
  except (OSError, RuntimeError, KeyError, TypeError) as e:
    raise ValueError(f"Cannot use {weights_path!r} as torchvision alexnet() weights ({e}).") from None
  num_classes = int(params["fc8"]["bias"].shape[0])
  config = configlib.load_config(f"{inference.CONFIG_FILE}:owt,model.num_classes={num_classes}")
  names = [f"class {i}" for i in range(num_classes)]
  if names_path:
    with open(names_path) as f:
      names = [line.strip() for line in f if line.strip()]
    if len(names) != num_classes:
      raise ValueError(f"{names_path!r} names {len(names)} classes; the weights have {num_classes}.")
  return inference.Network(
    config,
    build.from_config(config.model),
    jax.tree_util.tree_map(jnp.asarray, params),
    names,
    int(config.dataset.image_size),
    step=0,
  )


def main(argv):
  from alexnet_jax.tools import inference

  paths = image_paths(argv[1:])
  if not paths:
    print("error: give image files or folders of images after the flags.", file=sys.stderr)
    sys.exit(2)
  if not FLAGS.workdir and not FLAGS.torchvision_weights:
    print("error: give --workdir (a training run) or --torchvision_weights (a state_dict file).", file=sys.stderr)
    sys.exit(2)
  try:
    net = (
      torchvision_network(FLAGS.torchvision_weights, FLAGS.class_names)
      if FLAGS.torchvision_weights
      else inference.load(FLAGS.workdir, FLAGS.step)
    )
    images = np.stack([net.fit(read_image(p)) for p in paths])
    logits = net.logits(images, views=FLAGS.views)
  except (inference.InferenceError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  results = {p: top_classes(row, net.class_names, FLAGS.top) for p, row in zip(paths, logits)}
  if FLAGS.json:
    print(
      json.dumps(
        {
          "workdir": FLAGS.workdir and os.path.abspath(FLAGS.workdir),
          "torchvision_weights": FLAGS.torchvision_weights,
          "step": net.step,
          "views": FLAGS.views,
          "images": {p: [{"class": n, "probability": q} for n, q in r] for p, r in results.items()},
        },
        indent=2,
      )
    )
    return
  for path, classes in results.items():
    print(f"{path}: " + ", ".join(f"{name} {probability:.3f}" for name, probability in classes))


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "A training run's workdir (config.json and checkpoints/).")
  flags.DEFINE_string(
    "torchvision_weights",
    None,
    "Instead of --workdir: a torchvision alexnet() state_dict "
    "file (torch.save(model.state_dict(), PATH)), run as the owt preset.",
  )
  flags.DEFINE_string(
    "class_names",
    "",
    "With --torchvision_weights: a text file of class names, one per line in class order (e.g. ImageNet's 1000).",
  )
  flags.DEFINE_integer("step", None, "The checkpoint's step (default: the latest).")
  flags.DEFINE_enum("views", "center", ["center", "ten_crop"], "Score the centre crop or the paper's 10 crops.")
  flags.DEFINE_integer("top", 5, "Classes to print per image.")
  flags.DEFINE_bool("json", False, "Print one JSON object.")
  cli.run(main)
