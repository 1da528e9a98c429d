r"""Classify images with a trained network: the top classes of each image, with their probabilities.

    python -m alexnet_jax.tools.predict --workdir=/tmp/alexnet_smoke photo.jpg more.png a_folder/

loads the workdir's config and its latest checkpoint (or `--step`), or torchvision alexnet() weights
(`--torchvision_weights=PATH.pth --class_names=FILE`: the owt preset, to check the conversion on your own
photos), brings each image to the run's stored
size as its dataset was prepared (squashed to a square first where it was, then the shorter side and the
centre) and scores it as evaluation does (the
centre crop, or the paper's 10 crops with `--views=ten_crop`). Prints the top `--top` classes per image,
named as the dataset names them; `--json` prints one JSON object instead.
"""

import json
import os
import sys

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax import cli, configlib, paths
from alexnet_jax.data import sources
from alexnet_jax.model import build
from alexnet_jax.tools import convert, inference

FLAGS = flags.FLAGS
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_paths(arguments) -> list:
  """The images to classify, from the command line's arguments.

  Args:
    arguments: paths of image files and of folders.

  Returns:
    The files named, and the images directly inside each folder named (IMAGE_SUFFIXES), in sorted order.
  """
  paths = []
  for argument in arguments:
    if os.path.isdir(argument):
      paths += sorted(os.path.join(argument, f) for f in os.listdir(argument) if f.lower().endswith(IMAGE_SUFFIXES))
    else:
      paths.append(argument)
  return paths


def read_image(path: str) -> np.ndarray:
  """Reads and decodes one image file.

  Args:
    path: a JPEG, PNG or other image file.

  Returns:
    The image as RGB uint8 [H, W, 3].

  Raises:
    ValueError: the file cannot be read or decoded (the message names it).
  """
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
  """The k most probable classes of one image.

  Args:
    logits: the image's class scores [num_classes].
    names: the class names, in class order.
    k: how many classes to return.

  Returns:
    [(name, probability)] of the k most probable classes (softmax of `logits`), most probable first.
  """
  probs = np.exp(logits - logits.max())
  probs /= probs.sum()
  order = np.argsort(-probs, kind="stable")[:k]
  return [(names[i], float(probs[i])) for i in order]


def class_names(names_path: str, num_classes: int) -> list:
  """The class names in `names_path` (one per line, in class order), or 'class <i>' without a file."""
  if not names_path:
    return [f"class {i}" for i in range(num_classes)]
  try:
    with open(os.path.expanduser(names_path)) as f:
      names = [line.strip() for line in f if line.strip()]
  except OSError as e:
    raise ValueError(f"Cannot read the class names in {names_path!r} ({e.strerror}).") from None
  if len(names) != num_classes:
    raise ValueError(f"{names_path!r} names {len(names)} classes; the weights have {num_classes}.")
  return names


def torchvision_network(weights_path: str, names_path: str = "") -> inference.Network:
  """A network from torchvision `alexnet()` weights, evaluated as torchvision's recipe is (shorter side
  256, the 224 centre, ImageNet's mean and std).

  Args:
    weights_path: a state_dict file, as `torch.save(model.state_dict(), PATH)` writes it.
    names_path: a text file of class names, one per line in class order; '' names them 'class <i>'.

  Returns:
    The owt preset with those weights, as `inference.load` returns a trained run.

  Raises:
    ValueError: PyTorch is missing, or the files cannot be used (the message says which and why).
  """
  try:
    import torch  # noqa: PLC0415 (optional: only --torchvision_weights needs PyTorch)
  except ImportError:
    raise ValueError("--torchvision_weights needs PyTorch: .venv/bin/pip install torch") from None
  try:
    state_dict = torch.load(os.path.expanduser(weights_path), map_location="cpu", weights_only=True)
    params = convert.torchvision_to_flax(state_dict)["params"]
  except (OSError, RuntimeError, KeyError, TypeError) as e:
    raise ValueError(f"Cannot use {weights_path!r} as torchvision alexnet() weights ({e}).") from None
  num_classes = int(params["fc8"]["bias"].shape[0])
  config = configlib.load_config(f"{paths.CONFIG_FILE}:owt,model.num_classes={num_classes}")
  return inference.Network(
    config,
    build.from_config(config.model),
    jax.tree_util.tree_map(jnp.asarray, params),
    class_names(names_path, num_classes),
    int(config.dataset.image_size),
    step=0,
  )


def predict(paths, *, workdir=None, step=None, torchvision_weights=None, names_path="", views="center", top=5):
  """Classifies image files with a trained run's network or with torchvision weights.

  Args:
    paths: the image files.
    workdir: a training run's workdir (its config and checkpoints), unless `torchvision_weights` is given.
    step: the checkpoint's step; None: the latest.
    torchvision_weights: a torchvision alexnet() state_dict file, used instead of `workdir`.
    names_path: with `torchvision_weights`, a file of class names (one per line, in class order).
    views: 'center' (the centre crop) or 'ten_crop' (the paper's 10 crops).
    top: classes to return per image.

  Returns:
    (the checkpoint's step, {path: [(class name, probability)] of its `top` classes, most probable first}).

  Raises:
    inference.InferenceError: the workdir or the checkpoint cannot be used.
    ValueError: an image or the torchvision files cannot be used.
  """
  net = torchvision_network(torchvision_weights, names_path) if torchvision_weights else inference.load(workdir, step)
  logits = net.logits(np.stack([net.fit(read_image(p)) for p in paths]), views=views)
  return net.step, {p: top_classes(row, net.class_names, top) for p, row in zip(paths, logits)}


def as_json(step: int, results: dict) -> str:
  """The command's answer with --json: the run, the step, the views and each image's classes."""
  return json.dumps(
    {
      "workdir": FLAGS.workdir and paths.absolute(FLAGS.workdir),
      "torchvision_weights": FLAGS.torchvision_weights,
      "step": step,
      "views": FLAGS.views,
      "images": {p: [{"class": n, "probability": q} for n, q in r] for p, r in results.items()},
    },
    indent=2,
  )


def main(argv):
  paths = image_paths(argv[1:])
  if not paths:
    print("error: give image files or folders of images after the flags.", file=sys.stderr)
    sys.exit(2)
  if not FLAGS.workdir and not FLAGS.torchvision_weights:
    print("error: give --workdir (a training run) or --torchvision_weights (a state_dict file).", file=sys.stderr)
    sys.exit(2)
  try:
    step, results = predict(
      paths,
      workdir=FLAGS.workdir,
      step=FLAGS.step,
      torchvision_weights=FLAGS.torchvision_weights,
      names_path=FLAGS.class_names,
      views=FLAGS.views,
      top=FLAGS.top,
    )
  except (inference.InferenceError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if FLAGS.json:
    print(as_json(step, results))
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
