"""Max-pooling (section 3.4) with a choice of gradient implementation.

    max_pool(x, window, stride, impl)   x: [B, H, W, C], VALID windows (the paper's pooling never pads)

Both implementations compute the same forward pass (`lax.reduce_window` max) and the same gradient: each
window's incoming gradient goes to the first position (row-major within the window) holding the window's
maximum, and a position in several overlapping windows sums what it receives. They differ in how XLA
computes that gradient:

  xla     JAX's own rule: a `select_and_scatter` over the windows;
  masked  a custom VJP that, for each of the window*window offsets, compares a strided slice of x with the
          pooled output, keeps the hits not already claimed by an earlier offset, and scatters the
          gradient back with an interior-padded `lax.pad`. Every piece is element-wise, so XLA fuses the
          whole backward pass into a few loop kernels; it is the candidate for accelerators where
          select_and_scatter is slow (`python -m experiments.benchmark` measures both).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

POOL_IMPLS = ("xla", "masked")


def _forward(x, window, stride):
  # A Python -inf (not an array, which jit would trace) lets JAX recognise the max monoid and use its
  # differentiable reduce_window_max primitive.
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), "VALID")


def _offset_slice(x, di, dj, out_h, out_w, stride):
  """x at rows di, di+stride, ... and columns dj, dj+stride, ...: [B, out_h, out_w, C]."""
  b, _, _, c = x.shape
  return lax.slice(
    x, (0, di, dj, 0), (b, di + stride * (out_h - 1) + 1, dj + stride * (out_w - 1) + 1, c), (1, stride, stride, 1)
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _masked_max_pool(x, window, stride):
  return _forward(x, window, stride)


def _masked_fwd(x, window, stride):
  y = _forward(x, window, stride)
  return y, (x, y)


def _masked_bwd(window, stride, residuals, g):
  x, y = residuals
  _, height, width, _ = x.shape
  out_h, out_w = y.shape[1:3]
  claimed = jnp.zeros(y.shape, jnp.bool_)
  dx = jnp.zeros(x.shape, jnp.float32)  # sums of up to ceil(window/stride)^2 terms: keep them in f32
  for di in range(window):
    for dj in range(window):
      hit = (_offset_slice(x, di, dj, out_h, out_w, stride) == y) & ~claimed
      claimed = claimed | hit
      contribution = jnp.where(hit, g.astype(jnp.float32), 0.0)
      dx = dx + lax.pad(
        contribution,
        jnp.float32(0),
        (
          (0, 0, 0),
          (di, height - di - stride * (out_h - 1) - 1, stride - 1),
          (dj, width - dj - stride * (out_w - 1) - 1, stride - 1),
          (0, 0, 0),
        ),
      )
  return (dx.astype(x.dtype),)


_masked_max_pool.defvjp(_masked_fwd, _masked_bwd)


def max_pool(x, window: int, stride: int, impl: str = "xla"):
  """Max over `window` x `window` patches of channels-last `x` every `stride` pixels, no padding.

  The paper pools with window 3 at stride 2 (overlapping, section 3.4); window 2 at stride 2 is the
  traditional non-overlapping form it compares with.

  Args:
    x: float [B, H, W, C].
    window: the patch's side in pixels.
    stride: the step between patches in pixels.
    impl: 'xla' or 'masked' (POOL_IMPLS): the same values and gradient, computed differently.

  Returns:
    [B, (H - window) // stride + 1, (W - window) // stride + 1, C], x's dtype.

  Raises:
    ValueError: `impl` is not one of POOL_IMPLS.
  """
  if impl == "xla":
    return _forward(x, window, stride)
  if impl == "masked":
    return _masked_max_pool(x, window, stride)
  raise ValueError(f"Unknown pool impl {impl!r}: expected one of {POOL_IMPLS}.")
