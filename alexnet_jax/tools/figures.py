r"""Look inside a trained network: the paper's figures 3 and 4 from a workdir.

    python -m alexnet_jax.tools.figures --workdir=/tmp/alexnet_smoke --out=/tmp/inside

writes `conv1_kernels.png` (figure 3: every conv1 kernel, each stretched to the full range for display, one
block of rows per tower for the two-tower preset) and `neighbours.png` (figure 4: for `--queries`
validation images, the `--neighbours` training images whose fc7 features are closest to theirs in
Euclidean distance, as the paper measures it). The second needs the run's prepared dataset.
"""

import os
import sys

from absl import flags
import numpy as np

from alexnet_jax import cli, paths
from alexnet_jax.analysis import kernels, plots
from alexnet_jax.data import pipeline, sources
from alexnet_jax.model import models
from alexnet_jax.tools import inference

FLAGS = flags.FLAGS


def towers_of(net) -> int:
  """How many towers conv1's kernels were learned in (2 for the paper's net, else 1)."""
  return models.PRESETS[net.config.model.preset].lrn_towers


def split_images(net, split: str, limit: int = 0):
  """(uint8 images, labels) of a split of the run's dataset, at the run's stored size, in stored order."""
  config = pipeline.LoaderConfig(
    data_dir=os.path.expanduser(net.config.dataset.data_dir),
    name=net.config.dataset.name,
    split=split,
    batch_size=256,
    image_size=net.image_size,
    num_workers=0,
    shuffle=False,
  )
  images, labels = [], []
  for batch in pipeline.eval_batches(config):
    keep = batch["mask"] > 0
    images.append(batch["image"][keep])
    labels.append(batch["label"][keep])
    if limit and sum(len(i) for i in images) >= limit:
      break
  images, labels = np.concatenate(images), np.concatenate(labels)
  return (images[:limit], labels[:limit]) if limit else (images, labels)


def nearest(query_features: np.ndarray, features: np.ndarray, k: int) -> np.ndarray:
  """Indices [Q, k] of the k rows of `features` nearest to each query (Euclidean), nearest first."""
  distances = (
    np.square(query_features).sum(1)[:, None] - 2 * query_features @ features.T + np.square(features).sum(1)[None, :]
  )
  return np.argsort(distances, axis=1, kind="stable")[:, :k]


def write_kernels(net, out: str) -> str:
  """Writes figure 3, every conv1 kernel, to OUT/conv1_kernels.png and returns its path."""
  plt = plots.pyplot()
  kernel = np.asarray(net.params["conv1"]["kernel"])
  towers = towers_of(net)
  fig, ax = plt.subplots(figsize=(8, 4 * towers))
  ax.imshow(kernels.tile(kernel, towers=towers), interpolation="nearest")
  ax.set_title(f"conv1: {kernel.shape[-1]} kernels" + (", one tower per block of rows" if towers > 1 else ""))
  ax.axis("off")
  path = os.path.join(out, "conv1_kernels.png")
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


def write_neighbours(net, out: str, queries: int, neighbours: int) -> str:
  """Writes figure 4, validation images beside their nearest training images in fc7 space, to
  OUT/neighbours.png and returns its path."""
  plt = plots.pyplot()
  d = net.config.dataset
  query_images, _ = split_images(net, d.eval_split, limit=queries)
  train_images, _ = split_images(net, d.train_split)
  found = nearest(net.features(query_images, "fc7"), net.features(train_images, "fc7"), neighbours)
  fig, axes = plt.subplots(queries, neighbours + 1, figsize=(1.6 * (neighbours + 1), 1.6 * queries), squeeze=False)
  for row, (query, indices) in enumerate(zip(query_images, found)):
    for col, image in enumerate([query] + [train_images[i] for i in indices]):
      axes[row, col].imshow(image)
      axes[row, col].axis("off")
  axes[0, 0].set_title("validation", fontsize=8)
  axes[0, 1].set_title("nearest training images (fc7)", fontsize=8, loc="left")
  path = os.path.join(out, "neighbours.png")
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)
  return path


def main(argv):
  del argv
  try:
    net = inference.load(FLAGS.workdir, FLAGS.step)
    out = paths.absolute(FLAGS.out)
    os.makedirs(out, exist_ok=True)
    print(f"Wrote {write_kernels(net, out)}")
    if FLAGS.queries > 0:
      print(f"Wrote {write_neighbours(net, out, FLAGS.queries, FLAGS.neighbours)}")
  except (inference.InferenceError, sources.DatasetError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "A training run's workdir (config.json and checkpoints/).", required=True)
  flags.DEFINE_string("out", None, "Folder for the figures (created if missing).", required=True)
  flags.DEFINE_integer("step", None, "The checkpoint's step (default: the latest).")
  flags.DEFINE_integer("queries", 5, "Validation images in neighbours.png (0: no neighbours.png).")
  flags.DEFINE_integer("neighbours", 6, "Nearest training images per validation image.")
  cli.run(main)
