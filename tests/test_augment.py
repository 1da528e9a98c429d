"""Device-side augmentation and evaluation views against hand-computed NumPy results."""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from alexnet_jax.data import augment
from alexnet_jax.data import stats


def images(batch=4, size=12, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size=(batch, size, size, 3)).astype(np.uint8)


def test_ten_crop_equals_hand_sliced_views():
  x = images(2, 10)
  views = np.asarray(augment.ten_crop(jnp.asarray(x), 6))
  assert views.shape == (2, 10, 6, 6, 3)
  expected = [x[:, 0:6, 0:6], x[:, 0:6, 4:10], x[:, 4:10, 0:6], x[:, 4:10, 4:10], x[:, 2:8, 2:8]]
  expected += [e[:, :, ::-1] for e in expected]
  for i, e in enumerate(expected):
    np.testing.assert_array_equal(views[:, i], e)
  np.testing.assert_array_equal(np.asarray(augment.center_crop(jnp.asarray(x), 6)), x[:, 2:8, 2:8])


def test_random_crop_takes_a_real_window_of_each_image_and_varies():
  x = images(16, 12)
  crops = np.asarray(augment.random_crop(jnp.asarray(x), jax.random.key(0), 8))
  offsets = []
  for image, crop in zip(x, crops):
    found = [(y, z) for y in range(5) for z in range(5) if np.array_equal(image[y : y + 8, z : z + 8], crop)]
    assert found, "the crop is not a window of its own image"
    offsets.append(found[0])
  assert len(set(offsets)) > 4  # independent per image
  with pytest.raises(ValueError, match="Cannot crop 13x13 patches from 12x12 images"):
    augment.random_crop(jnp.asarray(x), jax.random.key(0), 13)


def test_random_flip_mirrors_about_half():
  x = images(200, 4)
  flipped = np.asarray(augment.random_flip(jnp.asarray(x), jax.random.key(1)))
  mirrored = np.array([np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, x)])
  same = np.array([np.array_equal(f, i) for f, i in zip(flipped, x)])
  assert np.all(mirrored | same) and 70 < mirrored.sum() < 130


def test_pca_lighting_is_the_papers_formula():
  x = jnp.asarray(images(2000, 2), jnp.float32)
  out = np.asarray(augment.pca_lighting(x, jax.random.key(0)), np.float64)
  np.testing.assert_array_equal(np.asarray(augment.pca_lighting(x, jax.random.key(0), std=0.0)), x)
  shift = out - np.asarray(x, np.float64)
  assert np.allclose(shift, shift[:, :1, :1, :], atol=1e-3)  # one colour shift per image
  # shift = P (alpha * lambda)  =>  alpha = (P^-1 shift) / lambda; alpha ~ N(0, 0.1) per eigenvalue.
  p = np.asarray(augment.IMAGENET_EIGVEC)
  alpha = np.linalg.solve(p, shift[:, 0, 0, :].T).T / np.asarray(augment.IMAGENET_EIGVAL)
  np.testing.assert_allclose(alpha.std(0), 0.1, rtol=0.1)
  np.testing.assert_allclose(alpha.mean(0), 0.0, atol=0.01)
  assert abs(np.corrcoef(alpha.T)[0, 1]) < 0.1  # independent per eigenvalue
  np.testing.assert_allclose(shift.mean(axis=(0, 1, 2)), 0.0, atol=0.5)  # mean over draws near zero


def test_normalize_per_channel_and_per_pixel():
  x = images(3, 5)
  mean = np.array([10.0, 20.0, 30.0])
  np.testing.assert_allclose(
    augment.normalize(jnp.asarray(x), mean, [2.0, 4.0, 5.0]), (x - mean) / np.array([2.0, 4.0, 5.0]), rtol=1e-6
  )
  mean_image = np.random.default_rng(1).uniform(0, 255, size=(5, 5, 3))
  np.testing.assert_allclose(augment.normalize(jnp.asarray(x), mean_image), x - mean_image, rtol=1e-5, atol=1e-4)


def test_train_and_eval_preprocess_shapes_and_upsampling():
  batch = {"image": jnp.asarray(images(4, 16)), "label": jnp.zeros(4, jnp.int32)}
  out = augment.train_preprocess(batch, jax.random.key(0), resize_to=32, crop_size=28)
  assert out["image"].shape == (4, 28, 28, 3) and out["image"].dtype == jnp.float32
  ev = augment.eval_preprocess(batch, resize_to=32, crop_size=28, views="ten_crop", dtype=jnp.bfloat16)
  assert ev["image"].shape == (4, 10, 28, 28, 3) and ev["image"].dtype == jnp.bfloat16
  # Without lighting and flip, the training view is a window of the eval-normalised upsampled image.
  plain = augment.train_preprocess(batch, jax.random.key(0), resize_to=32, crop_size=32, flip=False, pca_std=0.0)
  full = augment.eval_preprocess(batch, resize_to=32, crop_size=32)
  np.testing.assert_allclose(plain["image"], full["image"], rtol=1e-6)


def test_random_resized_crop_shapes_and_identity_at_full_area():
  x = jnp.asarray(images(3, 16), jnp.float32)
  out = augment.random_resized_crop(x, jax.random.key(0), 8)
  assert out.shape == (3, 8, 8, 3)
  full = augment.random_resized_crop(x, jax.random.key(0), 16, area_range=(1.0, 1.0), ratio_range=(1.0, 1.0))
  np.testing.assert_allclose(full, x, atol=1e-3)


def test_random_resized_crop_samples_area_aspect_and_position_as_specified():
  """Inception crops of coordinate ramps (channel 0 holds the column, channel 1 the row): bilinear
  upsampling keeps a ramp linear, so each output's slope is box side / output size and its first pixel
  gives the box's corner. Over 400 crops, the measured area fraction must be uniform on area_range, every
  aspect (width / height) the one asked for, and the corner uniform over the positions that fit."""
  height = width = 64
  rows, cols = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
  ramp = np.stack([cols, rows, np.zeros_like(rows)], -1)
  batch, size, ratio = 400, 96, 1.5  # area * ratio <= 0.9: no box is clipped
  out = np.asarray(
    augment.random_resized_crop(
      jnp.asarray(np.broadcast_to(ramp, (batch, height, width, 3))),
      jax.random.key(3),
      size,
      area_range=(0.1, 0.6),
      ratio_range=(ratio, ratio),
    ),
    np.float64,
  )
  box_w = np.median(np.diff(out[:, size // 2, :, 0], axis=-1), axis=-1) * size
  box_h = np.median(np.diff(out[:, :, size // 2, 1], axis=-1), axis=-1) * size
  np.testing.assert_allclose(box_w / box_h, ratio, rtol=1e-3)
  area = box_w * box_h / (height * width)
  assert scipy_stats.kstest(area, scipy_stats.uniform(0.1, 0.5).cdf).pvalue > 1e-3
  # Output pixel j's centre maps to x0 + (j + 0.5) * w / size in pixel-edge coordinates, where the ramp
  # reads that minus 0.5.
  x0 = out[:, size // 2, size // 2, 0] + 0.5 - (size // 2 + 0.5) * box_w / size
  y0 = out[:, size // 2, size // 2, 1] + 0.5 - (size // 2 + 0.5) * box_h / size
  assert np.all(x0 > -0.01) and np.all(x0 + box_w < width + 0.01)
  assert scipy_stats.kstest(x0 / (width - box_w), "uniform").pvalue > 1e-3
  assert scipy_stats.kstest(y0 / (height - box_h), "uniform").pvalue > 1e-3


def test_dataset_statistics_match_numpy():
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, 256, size=(5, 4, 4, 3)).astype(np.uint8) for _ in range(3)]
  result = stats.pixel_statistics(iter(batches), 4)
  pixels = np.concatenate(batches).reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(result["mean_rgb"], pixels.mean(0))
  np.testing.assert_allclose(result["covariance"], np.cov(pixels.T, bias=True), rtol=1e-9)
  np.testing.assert_allclose(result["mean_image"], np.concatenate(batches).mean(0))


def test_pca_eigenvalues_follow_the_convention_of_the_imagenet_constants():
  """Grey pixels, half black and half white: in [0, 1] units each channel has variance 0.25 and all three
  move together, so the covariance (0.25 everywhere) has eigenvalues 0.75, 0, 0 and first axis (1,1,1)/sqrt 3;
  IMAGENET_EIGVAL's convention (times 255) makes that 191.25."""
  grey = np.repeat(np.array([0, 255] * 8, np.uint8).reshape(4, 2, 2, 1), 3, axis=-1)
  result = stats.pixel_statistics(iter([grey]), 2)
  np.testing.assert_allclose(result["pca_eigval"], [191.25, 0.0, 0.0], atol=1e-9)
  np.testing.assert_allclose(np.abs(np.asarray(result["pca_eigvec"])[:, 0]), np.full(3, 1 / np.sqrt(3)), rtol=1e-9)


def test_imagenette_statistics_come_out_near_the_imagenet_constants(imagenette_subset_dir):
  """Imagenette is ImageNet photos: its principal components, computed by the tool, must land near the
  published ImageNet ones that the config uses (the same convention, the same kind of pixels)."""
  result = stats.dataset_statistics(imagenette_subset_dir, "imagenette_subset", num_workers=0)
  eigval, eigvec = np.asarray(result["pca_eigval"]), np.asarray(result["pca_eigvec"])
  assert abs(eigval[0] / augment.IMAGENET_EIGVAL[0] - 1) < 0.2, eigval  # 55.0 on the whole train split
  assert eigval[1] < eigval[0] / 5 and eigval[2] < eigval[1], eigval
  cosine = abs(eigvec[:, 0] @ np.asarray(augment.IMAGENET_EIGVEC)[:, 0])
  assert cosine > 0.99, cosine


def test_center_training_crop_is_the_evaluation_centre_view():
  """crop='center', no flip, no lighting: training sees exactly the evaluation's centre patch every time."""
  images = np.random.default_rng(0).integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
  batch = {"image": jnp.asarray(images), "label": jnp.zeros(3, jnp.int32)}
  kwargs = dict(resize_to=None, crop_size=14, mean=(100.0, 110.0, 120.0), std=(50.0, 50.0, 50.0))
  trained = augment.train_preprocess(batch, jax.random.key(3), crop="center", flip=False, pca_std=0.0, **kwargs)
  expected = (images[:, 3:17, 3:17].astype(np.float32) - np.array([100.0, 110.0, 120.0])) / 50.0
  np.testing.assert_allclose(trained["image"], expected, rtol=1e-6)
  evaluated = augment.eval_preprocess(batch, views="center", **kwargs)
  np.testing.assert_allclose(trained["image"], evaluated["image"], rtol=1e-6)


@pytest.mark.slow
def test_stats_command_writes_beside_the_dataset_not_into_the_current_folder(tmp_path, synthetic_data_dir):
  """The command line: default output beside the dataset; its mean equals the decoded pixels' mean."""
  import json
  import subprocess
  import sys
  from conftest import REPO
  from alexnet_jax.data import pipeline

  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "alexnet_jax.data.stats",
      f"--data_dir={synthetic_data_dir}",
      "--name=synthetic_shapes",
      "--split=val",
    ],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=tmp_path,
    env={**os.environ, "PYTHONPATH": str(REPO)},
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert list(tmp_path.iterdir()) == []  # nothing in the folder it ran from
  out = pathlib.Path(synthetic_data_dir) / "synthetic_shapes.val_stats.json"
  assert f"Written to {out}" in result.stdout
  stats = json.loads(out.read_text())
  config = pipeline.LoaderConfig(
    data_dir=synthetic_data_dir,
    name="synthetic_shapes",
    split="val",
    batch_size=32,
    image_size=0,
    seed=0,
    num_workers=0,
    shuffle=False,
  )
  pixels = np.concatenate([b["image"][b["mask"] > 0] for b in pipeline.eval_batches(config)]).astype(np.float64)
  np.testing.assert_allclose(stats["mean_rgb"], pixels.reshape(-1, 3).mean(0), rtol=1e-6)
  np.testing.assert_allclose(np.load(str(out) + ".mean_image.npy"), pixels.mean(0), rtol=1e-5)


def test_a_per_pixel_mean_is_cut_at_each_random_crops_offset():
  """Section 2's mean image, numbered pixel by pixel: after the random crop (no flip, no lighting), image
  minus mean must be the crop of image minus the same window of the mean, wherever the crop landed."""
  batch_size, side, crop = 8, 12, 5
  images = np.random.default_rng(0).integers(0, 256, (batch_size, side, side, 3)).astype(np.uint8)
  mean = np.arange(side * side * 3, dtype=np.float32).reshape(side, side, 3)  # every pixel its own number
  key = jax.random.key(7)
  out = augment.train_preprocess(
    {"image": jnp.asarray(images), "label": jnp.zeros(batch_size, jnp.int32)},
    key,
    resize_to=None,
    crop_size=crop,
    flip=False,
    pca_std=0.0,
    mean=mean,
  )["image"]
  offsets = np.asarray(augment.random_crop_offsets(jax.random.split(key, 3)[0], batch_size, side, side, crop))
  assert len({tuple(o) for o in offsets}) > 1  # the crops land in different places
  for i, (y, x) in enumerate(offsets):
    want = images[i, y : y + crop, x : x + crop].astype(np.float32) - mean[y : y + crop, x : x + crop]
    np.testing.assert_allclose(out[i], want, rtol=1e-6)


def _bilinear_reference(image, size):
  """Bilinear resampling written out: output pixel i samples the input at (i + 0.5) * in / out - 0.5
  (pixel centres aligned), clamped to the image, between its two neighbours in each direction."""

  def axis_weights(n_in, n_out):
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), low] += 1 - (src - low)
    w[np.arange(n_out), high] += src - low
    return w

  wy, wx = axis_weights(image.shape[0], size), axis_weights(image.shape[1], size)
  return np.einsum("yi,xj,ijc->yxc", wy, wx, image.astype(np.float64))


def test_upsampling_matches_bilinear_written_out():
  """augment.resize 16 -> 32 (as imagenette's 128 -> 256) against the formula, pixel by pixel."""
  images = np.random.default_rng(5).integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
  got = np.asarray(augment.resize(jnp.asarray(images), 32))
  for image, out in zip(images, got):
    np.testing.assert_allclose(out, _bilinear_reference(image, 32), rtol=1e-5, atol=1e-3)


def test_an_unknown_crop_is_refused_when_the_preprocessor_is_built():
  with pytest.raises(ValueError, match=r"augment.crop='centre' is not one of \['random', 'inception', 'center'\]"):
    augment.train_preprocessor(resize_to=None, crop_size=8, crop="centre")
  built = augment.train_preprocessor(resize_to=None, crop_size=8, crop="center", flip=False, pca_std=0.0)
  batch = {"image": jnp.full((1, 10, 10, 3), 200, jnp.uint8)}
  assert built(batch, jax.random.key(0))["image"].shape == (1, 8, 8, 3)
