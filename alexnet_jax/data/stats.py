r"""Pixel statistics of a prepared dataset: what mean subtraction and PCA lighting need (sections 2, 4.1).

    python -m alexnet_jax.data.stats --data_dir=~/alexnet_data --name=imagenette2_128

writes `~/alexnet_data/imagenette2_128.train_stats.json` beside the dataset (or `--out`).

Writes per-channel mean and standard deviation (0-255), the RGB covariance's principal axes
(`pca_eigvec`, columns) and eigenvalues (`pca_eigval`) in the convention of augment.IMAGENET_EIGVAL (that
of fb.resnet.torch and MXNet, whose values everyone uses): eigenvalues of the covariance of pixels scaled
to [0, 1], times 255. On the study's Imagenette (ImageNet photos) this gives 55.0, 4.2, 0.85 beside
ImageNet's 55.46, 4.79, 1.15. Use them as --config.augment.eigval / --config.augment.eigvec. The per-pixel
mean image goes beside the JSON, to `<out>.mean_image.npy`: --config.augment.mean_image=<out>.mean_image.npy
subtracts it (section 2) instead of the per-channel mean.
"""

import json
import os
import sys

from absl import flags
import numpy as np

from alexnet_jax import cli
from alexnet_jax.data import pipeline, sources


def pixel_statistics(images_iter, image_size: int):
  """Accumulates sums over uint8 batches [B, S, S, 3] in float64; returns a dict of statistics.

  `pca_eigval` is in IMAGENET_EIGVAL's convention (module docstring): the covariance of 0-255 pixels has
  eigenvalues 255^2 times those of [0, 1] pixels, so dividing by 255 gives theirs times 255."""
  count = 0
  total = np.zeros(3)
  outer = np.zeros((3, 3))
  mean_image = np.zeros((image_size, image_size, 3))
  num_images = 0
  for images in images_iter:
    pixels = images.reshape(-1, 3).astype(np.float64)
    count += pixels.shape[0]
    total += pixels.sum(0)
    outer += pixels.T @ pixels
    mean_image += images.astype(np.float64).sum(0)
    num_images += images.shape[0]
  if not count:
    raise sources.DatasetError("No images to compute statistics from.")
  mean = total / count
  cov = outer / count - np.outer(mean, mean)
  eigval, eigvec = np.linalg.eigh(cov)
  order = np.argsort(eigval)[::-1]
  eigval, eigvec = eigval[order], eigvec[:, order]
  eigvec = eigvec * np.sign(eigvec[0:1, :] + 1e-12)  # a fixed sign convention
  return {
    "mean_rgb": mean.tolist(),
    "std_rgb": np.sqrt(np.diag(cov)).tolist(),
    "pca_eigval": (np.maximum(eigval, 0) / 255.0).tolist(),
    "pca_eigvec": eigvec.tolist(),
    "covariance": cov.tolist(),
    "num_images": num_images,
    "mean_image": mean_image / max(num_images, 1),
  }


def dataset_statistics(data_dir, name, split="train", image_size=0, batch_size=64, num_workers=-1):
  """Reads every image of a prepared dataset's split once and measures its pixels (`pixel_statistics`).

  Args:
    data_dir: the folder of prepared datasets.
    name: the dataset.
    split: the split measured.
    image_size: bring images to this size first (0: as stored).
    batch_size: images decoded per batch.
    num_workers: decoding processes (-1: one per core but one; 0: in this process).

  Returns:
    A dict of per-channel mean_rgb and std_rgb (0-255), pca_eigval and pca_eigvec, and the mean_image.
  """
  config = pipeline.LoaderConfig(
    data_dir=data_dir,
    name=name,
    split=split,
    batch_size=batch_size,
    image_size=image_size,
    num_workers=num_workers,
    shuffle=False,
  )
  info = sources.dataset_info(data_dir, name)
  size = image_size or info.image_size

  def images():
    for batch in pipeline.eval_batches(config):
      yield batch["image"][batch["mask"] > 0]

  return pixel_statistics(images(), size)


FLAGS = flags.FLAGS


def main(argv):
  del argv
  try:
    stats = dataset_statistics(FLAGS.data_dir, FLAGS.name, FLAGS.split, FLAGS.image_size)
  except sources.DatasetError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  out = output_path(FLAGS.out, FLAGS.data_dir, FLAGS.name, FLAGS.split)
  np.save(out + ".mean_image.npy", stats.pop("mean_image").astype(np.float32))
  with open(out, "w") as f:
    json.dump(stats, f, indent=2)
  print(json.dumps({k: stats[k] for k in ("mean_rgb", "std_rgb", "pca_eigval", "pca_eigvec")}, indent=2))
  print(f"Written to {out} and {out}.mean_image.npy (--config.augment.mean_image takes the second).")


def output_path(out: str, data_dir: str, name: str, split: str) -> str:
  """--out, or `<data_dir>/<name>.<split>_stats.json` beside the dataset (never the current folder)."""
  return os.path.expanduser(out) if out else os.path.join(os.path.expanduser(data_dir), f"{name}.{split}_stats.json")


if __name__ == "__main__":
  flags.DEFINE_string("data_dir", "~/alexnet_data", "Where prepared datasets live.")
  flags.DEFINE_string("name", None, "The prepared dataset.", required=True)
  flags.DEFINE_string("split", "train", "The split to measure.")
  flags.DEFINE_integer("image_size", 0, "Bring images to this size first (0: as stored).")
  flags.DEFINE_string(
    "out",
    "",
    "Output JSON (default: <data_dir>/<name>.<split>_stats.json); the mean image goes to <out>.mean_image.npy.",
  )
  cli.run(main)
