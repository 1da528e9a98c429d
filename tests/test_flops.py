"""The matrix-FLOP counter against hand counts, the paper's layer shapes and XLA's CPU cost analysis."""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from alexnet_jax.model import models
from alexnet_jax.tools import flops

NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, stride, padding):
  return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=NHWC)


def test_same_padded_conv_counts_only_taps_on_real_pixels():
  # 3x3 kernel, stride 1, padding 1 on a 4x4 map. Along one axis the 4 outputs see 2, 3, 3, 2 real
  # pixels (the edge outputs have one tap on padding): 10 pairs, so 10 x 10 = 100 in 2-D (not 16 x 9).
  x, w = jnp.ones((2, 4, 4, 5)), jnp.ones((3, 3, 5, 7))
  assert flops.count_flops(lambda x, w: _conv(x, w, 1, ((1, 1), (1, 1))), x, w) == 2 * 2 * 7 * 5 * 100


def test_grouped_conv_counts_each_group_on_its_own_channels():
  # Two groups of 4 input channels -> 3 outputs each: every output sums over 4 channels x 9 taps (VALID).
  x, w = jnp.ones((1, 5, 5, 8)), jnp.ones((3, 3, 4, 6))
  fn = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=NHWC, feature_group_count=2)
  assert flops.count_flops(fn, x, w) == 2 * (3 * 3) * 6 * 4 * 9


def test_dense_scan_and_cond():
  a, b = jnp.ones((3, 4)), jnp.ones((4, 5))
  assert flops.count_flops(jnp.matmul, a, b) == 2 * 3 * 4 * 5
  looped = lambda a, b: lax.scan(lambda c, _: (c, c @ b), a, None, length=7)[1]
  assert flops.count_flops(looped, a, b) == 7 * 2 * 3 * 4 * 5
  branches = lambda p, a, b: lax.cond(p, lambda: (a @ b) @ b.T, lambda: a @ jnp.zeros((4, 4)))
  # The costlier branch: (3x4 @ 4x5) + (3x5 @ 5x4) = 120 + 120 FLOPs (the other: 96).
  assert flops.count_flops(branches, True, a, b) == 2 * 3 * 4 * 5 * 2


def test_strided_conv_gradients_cost_the_forward_and_agree_with_xla():
  # JAX computes the input gradient of a strided convolution over a dilated cotangent; counting only
  # real elements makes each gradient cost exactly the forward pass, as in XLA's own (CPU) count.
  x, w = jnp.ones((2, 13, 13, 6)), jnp.ones((5, 5, 6, 8))
  forward = lambda x, w: _conv(x, w, 3, ((2, 1), (2, 1)))
  both = jax.value_and_grad(lambda x, w: jnp.sum(forward(x, w) ** 2), argnums=(0, 1))
  one = flops.count_flops(forward, x, w)
  assert flops.count_flops(both, x, w) == 3 * one
  for fn, expected in ((forward, one), (both, 3 * one)):
    cost = jax.jit(fn).lower(x, w).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    # XLA also counts the loss's element-wise work (square, sum and their gradient): a few FLOPs per
    # output element, against 243 per output element for the convolution alone.
    assert expected <= cost["flops"] <= expected + 5 * forward(x, w).size


def test_paper_preset_matches_figure_2_layer_by_layer():
  """Multiply-accumulates per image from the shapes of figure 2 (section 3.5), counting real pixels only:
  conv2 (5x5, pad 2, 27x27) has 27*5 - 2*(2+1) = 129 real (output, tap) pairs per axis, conv3-5 (3x3,
  pad 1, 13x13) 13*3 - 2 = 37; conv2, conv4 and conv5 see half the input channels (two towers)."""
  macs = {
    "conv1": 55 * 55 * 96 * (11 * 11 * 3),  # 227x227, stride 4, no padding: every tap is real
    "conv2": 129**2 * 256 * 48,
    "conv3": 37**2 * 384 * 256,
    "conv4": 37**2 * 384 * 192,
    "conv5": 37**2 * 256 * 192,
    "fc": 6 * 6 * 256 * 4096 + 4096 * 4096 + 4096 * 1000,
  }
  forward = 2 * sum(macs.values())
  # Training: each layer's forward pass and weight gradient, plus the input gradient of every layer but
  # conv1 (nothing needs the gradient of the images).
  train = 2 * (2 * macs["conv1"] + 3 * (sum(macs.values()) - macs["conv1"]))
  batch = 2
  for options in ({}, {"tower_impl": "grouped"}):  # same arithmetic, another layout
    model = models.AlexNet(preset="paper", num_classes=1000, **models.REFERENCE_IMPLS, **options)
    images = jax.ShapeDtypeStruct((batch, 227, 227, 3), jnp.float32)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 227, 227, 3)), train=False))["params"]
    assert flops.count_flops(lambda p, x: model.apply({"params": p}, x, train=False), params, images) == batch * forward
    got = flops.train_step_flops(model, params, images, jax.ShapeDtypeStruct((batch,), jnp.int32), jax.random.key(0))
    assert got == batch * train
  assert abs(train / 1e9 - 3.817) < 1e-3  # the figure the benchmark's utilisation divides by


def test_valid_taps_against_a_direct_loop():
  rng = np.random.default_rng(0)
  for _ in range(50):
    n, k, s, dl, dr = (int(v) for v in rng.integers(1, 6, 5))
    lo, hi = (int(v) for v in rng.integers(-2, 4, 2))
    extent = (n - 1) * dl + 1 + lo + hi - ((k - 1) * dr + 1)
    if extent < 0:
      continue
    m = extent // s + 1
    real = [lo + i * dl for i in range(n)]  # positions of real elements after low padding
    expected = sum(1 for o in range(m) for t in range(k) if o * s + t * dr in real)
    assert flops._valid_taps(n, m, k, s, lo, dl, dr) == expected
