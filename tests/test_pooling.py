"""Max-pooling: forward and gradient of both implementations against a NumPy loop of section 3.4's
pooling and of its gradient (each window's gradient to the first position holding its maximum)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.model.pooling import max_pool


def numpy_pool_and_grad(x, g, window, stride):
  """Reference by loops: y[b,i,j,c] = max of the window; dx gets g at the first (row-major) argmax."""
  b, h, w, c = x.shape
  out_h, out_w = (h - window) // stride + 1, (w - window) // stride + 1
  y = np.zeros((b, out_h, out_w, c), x.dtype)
  dx = np.zeros_like(x, dtype=np.float64)
  for n in range(b):
    for i in range(out_h):
      for j in range(out_w):
        for ch in range(c):
          patch = x[n, i * stride : i * stride + window, j * stride : j * stride + window, ch]
          flat = int(np.argmax(patch))  # np.argmax returns the first maximum in row-major order
          y[n, i, j, ch] = patch.flat[flat]
          dx[n, i * stride + flat // window, j * stride + flat % window, ch] += g[n, i, j, ch]
  return y, dx


def tied_input(shape, seed):
  """Small integers: many windows hold their maximum twice or more (as ReLU zeros and bf16 values do)."""
  return np.random.default_rng(seed).integers(0, 4, size=shape).astype(np.float32)


@pytest.mark.parametrize("impl", ["xla", "masked"])
@pytest.mark.parametrize("window,stride,size", [(3, 2, 13), (3, 2, 12), (2, 2, 9), (3, 1, 6)])
def test_forward_and_gradient_match_the_loop_reference(impl, window, stride, size):
  x = tied_input((2, size, size + 1, 3), seed=size + window)
  out_h, out_w = (size - window) // stride + 1, (size + 1 - window) // stride + 1
  g = np.random.default_rng(1).normal(size=(2, out_h, out_w, 3)).astype(np.float32)
  want_y, want_dx = numpy_pool_and_grad(x, g, window, stride)
  # Under jit, as in a train step (a traced init value once made the gradient undefined there).
  y, dx = jax.jit(
    lambda v, g: (max_pool(v, window, stride, impl), jax.vjp(lambda u: max_pool(u, window, stride, impl), v)[1](g)[0])
  )(jnp.asarray(x), jnp.asarray(g))
  np.testing.assert_array_equal(np.asarray(y), want_y)
  np.testing.assert_allclose(np.asarray(dx), want_dx, rtol=1e-6, atol=1e-6)
  # The input really had windows with a repeated maximum, so the first-maximum rule was exercised.
  windows = np.lib.stride_tricks.sliding_window_view(x, (window, window), axis=(1, 2))[:, ::stride, ::stride]
  assert ((windows == want_y[..., None, None]).sum(axis=(-2, -1)) > 1).any()


def test_masked_gradient_equals_xla_in_bfloat16():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 27, 27, 8)), jnp.bfloat16)
  g = jnp.asarray(np.random.default_rng(3).normal(size=(2, 13, 13, 8)), jnp.bfloat16)
  grads = {}
  for impl in ("xla", "masked"):
    _, vjp = jax.vjp(lambda v: max_pool(v, 3, 2, impl), x)
    grads[impl] = np.asarray(vjp(g)[0], np.float32)
  assert grads["masked"].dtype == np.float32 and vjp(g)[0].dtype == jnp.bfloat16
  # Sums of up to four bf16 terms: the masked rule adds in f32, XLA in bf16.
  np.testing.assert_allclose(grads["masked"], grads["xla"], rtol=2e-2, atol=2e-2)


def test_unknown_impl_is_a_clear_error():
  with pytest.raises(ValueError, match="Unknown pool impl 'fast'"):
    max_pool(jnp.zeros((1, 5, 5, 1)), 3, 2, "fast")
