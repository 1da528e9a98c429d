"""local_response_norm against a float64 NumPy loop of the paper's formula (section 3.3), in each of its
implementations (the matmul one has a hand-written gradient: checked against finite differences)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.model.lrn import LRN_IMPLS, local_response_norm

impls = pytest.mark.parametrize("impl", LRN_IMPLS)


def reference_lrn(a, size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_per_size=False):
  """The formula exactly as printed, one channel at a time, in float64."""
  a = np.asarray(a, np.float64)
  channels = a.shape[-1]
  scale = alpha / size if alpha_per_size else alpha
  out = np.empty_like(a)
  for i in range(channels):
    lo, hi = max(0, i - size // 2), min(channels - 1, i + (size - 1) // 2)
    energy = np.zeros(a.shape[:-1])
    for j in range(lo, hi + 1):
      energy += a[..., j] ** 2
    out[..., i] = a[..., i] / (k + scale * energy) ** beta
  return out


@impls
@pytest.mark.parametrize("channels", [1, 3, 5, 7, 48, 96])
@pytest.mark.parametrize("alpha_per_size", [False, True])
def test_matches_numpy_formula(channels, alpha_per_size, impl):
  rng = np.random.default_rng(channels)
  # Large activations so the normaliser differs from k**-beta by a lot (alpha * sum(a^2) ~ 1).
  x = rng.normal(scale=40.0, size=(2, 3, 4, channels)).astype(np.float32)
  expected = reference_lrn(x, alpha_per_size=alpha_per_size)
  got = np.asarray(local_response_norm(jnp.asarray(x), alpha_per_size=alpha_per_size, impl=impl), np.float64)
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
  # The normalisation must actually bite, or the test proves nothing about the sum.
  assert np.max(np.abs(expected / x - 2.0**-0.75)) > 1e-2


@impls
@pytest.mark.parametrize("size,k,alpha,beta", [(3, 1.0, 1e-3, 0.5), (4, 2.0, 1e-2, 0.75), (9, 0.5, 1e-4, 1.0)])
def test_other_constants_and_even_window(size, k, alpha, beta, impl):
  x = np.random.default_rng(size).normal(scale=10.0, size=(5, 12)).astype(np.float32)
  np.testing.assert_allclose(
    np.asarray(local_response_norm(jnp.asarray(x), size=size, k=k, alpha=alpha, beta=beta, impl=impl), np.float64),
    reference_lrn(x, size=size, k=k, alpha=alpha, beta=beta),
    rtol=1e-6,
  )


@impls
@pytest.mark.parametrize("size,beta", [(5, 0.75), (4, 0.5)])  # an even window is not symmetric
def test_gradient_matches_finite_differences(impl, size, beta):
  rng = np.random.default_rng(size)
  x = rng.normal(scale=30.0, size=(2, 7)).astype(np.float64)
  weights = rng.normal(size=x.shape)
  constants = dict(size=size, alpha=1e-3, beta=beta)

  def objective_np(a):
    return float(np.sum(reference_lrn(a, **constants) * weights))

  # JAX's float32 gradient against central differences of the float64 NumPy formula.
  grad = np.asarray(
    jax.grad(lambda a: jnp.sum(local_response_norm(a, **constants, impl=impl) * weights))(jnp.asarray(x, jnp.float32)),
    np.float64,
  )
  eps = 1e-4
  numeric = np.zeros_like(x)
  for idx in np.ndindex(x.shape):
    up, down = x.copy(), x.copy()
    up[idx] += eps
    down[idx] -= eps
    numeric[idx] = (objective_np(up) - objective_np(down)) / (2 * eps)
  np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)
  assert np.max(np.abs(numeric - weights * 2.0**-beta)) > 1e-2  # the energy term matters


@impls
def test_bfloat16_in_bfloat16_out_with_float32_math(impl):
  x = np.random.default_rng(1).normal(scale=50.0, size=(4, 32)).astype(np.float32)
  x_bf16 = jnp.asarray(x, jnp.bfloat16)
  out = local_response_norm(x_bf16, impl=impl)
  assert out.dtype == jnp.bfloat16
  # Reference on exactly the bf16 input values: only the final rounding to bf16 may differ.
  expected = reference_lrn(np.asarray(x_bf16, np.float32))
  np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=2**-8)
  # Summing bf16 squares in bf16 would drop the energy term; float32 math keeps it.
  assert np.max(np.abs(expected - np.asarray(x_bf16, np.float64) * 2.0**-0.75)) > 0.5


@impls
def test_jit_and_vmap(impl):
  x = jnp.asarray(np.random.default_rng(2).normal(scale=20.0, size=(3, 4, 4, 10)), jnp.float32)
  lrn = lambda v: local_response_norm(v, impl=impl)
  eager = lrn(x)
  np.testing.assert_allclose(jax.jit(lrn)(x), eager, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(lrn)(x), eager, rtol=1e-6)
  np.testing.assert_allclose(eager, reference_lrn(np.asarray(x)), rtol=1e-6)


def test_rejects_unknown_impl():
  with pytest.raises(ValueError, match="Unknown LRN impl 'fft'"):
    local_response_norm(jnp.ones((2, 3)), impl="fft")


def test_rejects_empty_window():
  with pytest.raises(ValueError, match="size must be >= 1"):
    local_response_norm(jnp.ones((2, 3)), size=0)
