"""conv1 kernel statistics and figure 3's layout, on kernels built by hand."""

import numpy as np
import pytest

from alexnet_jax.analysis import kernels


def test_colour_share_of_grey_single_channel_and_opponent_kernels():
  rng = np.random.default_rng(0)
  pattern = rng.normal(size=(5, 5))
  grey = np.repeat(pattern[:, :, None], 3, axis=2)
  red = np.zeros((5, 5, 3))
  red[:, :, 0] = pattern
  opponent = np.stack([pattern, -pattern, np.zeros_like(pattern)], axis=2)  # channels sum to 0 per tap
  share = kernels.colour_share(np.stack([grey, red, opponent, np.zeros((5, 5, 3))], axis=-1))
  # grey: no energy off the grey axis; one channel v: (v - v/3)^2 + 2 (v/3)^2 = 2/3 v^2 of v^2; opponent: all.
  np.testing.assert_allclose(share, [0.0, 2 / 3, 1.0, 0.0], atol=1e-12)


def test_colour_share_refuses_kernels_that_are_not_rgb():
  with pytest.raises(ValueError, match=r"\[k, k, 3, n\]"):
    kernels.colour_share(np.zeros((5, 5, 4, 2)))


def test_tile_has_one_tile_per_kernel_in_a_block_per_tower():
  k, n = 3, 12
  w = np.zeros((k, k, 3, n))
  for i in range(n):
    w[0, 0, :, i] = i + 1.0  # each kernel: one bright tap at its top-left, the rest 0
  image = kernels.tile(w, towers=2, columns=3, gap=1, background=0.5)
  # 2 towers x 2 rows of 3 tiles; each tile is k wide and followed by a 1-pixel gap, towers 2 more apart.
  assert image.shape == (2 * 2 * (k + 1) + 2, 3 * (k + 1) - 1, 3)
  bright = np.argwhere(image[..., 0] == 1.0)
  assert len(bright) == n  # every kernel's brightest tap, once
  tower_of = bright[:, 0] >= 2 * (k + 1) + 2
  assert tower_of.sum() == 6  # the second tower's six kernels in the lower block


def test_nearest_neighbours_against_a_loop_over_distances():
  from alexnet_jax.tools import figures as look

  rng = np.random.default_rng(3)
  features, queries = rng.normal(size=(40, 6)), rng.normal(size=(4, 6))
  found = look.nearest(queries, features, 5)
  for q, row in zip(queries, found):
    distances = [np.sqrt(np.sum((q - f) ** 2)) for f in features]
    assert list(row) == list(np.argsort(distances)[:5])
