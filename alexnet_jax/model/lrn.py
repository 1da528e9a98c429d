"""Local response normalisation (Krizhevsky et al., 2012, section 3.3) as a pure jnp function.

    b_i = a_i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a_j^2) ** beta

The sum runs over `n` ("size") adjacent channels centred on channel i, clipped at the edges of the N
channels. The paper's constants are k=2, n=5, alpha=1e-4, beta=0.75 (section 3.3), with alpha multiplying
the plain sum. cuda-convnet, Caffe and PyTorch's `nn.LocalResponseNorm` divide alpha by n instead:
`alpha_per_size=True` selects that convention.

Two implementations of the same function (`LRN_IMPLS`), speed settings only:
  slices  the window sum as `size` shifted slices of the zero-padded squares, differentiated by JAX;
  matmul  the window sum as one multiply by a banded 0/1 matrix over the channels, with the gradient
          written out (`_banded_lrn_bwd`): shifted slices of a short channel axis and the power's own
          derivative are slow on XLA:CPU (experiments/results/benchmark/README.md).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Section 3.3: "k = 2, n = 5, alpha = 1e-4, and beta = 0.75".
PAPER_K = 2.0
PAPER_SIZE = 5
PAPER_ALPHA = 1e-4
PAPER_BETA = 0.75

LRN_IMPLS = ("slices", "matmul")


def local_response_norm(
  x, *, size=PAPER_SIZE, k=PAPER_K, alpha=PAPER_ALPHA, beta=PAPER_BETA, alpha_per_size=False, impl="slices"
):
  """Normalises each channel of channels-last `x` by the energy of its `size` neighbouring channels.

  Args:
    x: array [..., C], any float dtype. Computed in float32 (bf16 squares summed in bf16 lose the
      small alpha term entirely); the result has x's dtype.
    size: channels in the window, centred on i (for even sizes, size//2 before and (size-1)//2 after,
      as in PyTorch); clipped at the channel edges, so C < size is fine.
    k, alpha, beta: the formula's constants (paper section 3.3).
    alpha_per_size: divide alpha by `size` (cuda-convnet / Caffe / PyTorch convention).
    impl: one of `LRN_IMPLS`; the same function and gradient either way.

  Returns:
    b, the same shape and dtype as x.

  Raises:
    ValueError: `size` < 1, or `impl` is not one of LRN_IMPLS.
  """
  if size < 1:
    raise ValueError(f"local_response_norm: size must be >= 1, got {size}.")
  if impl not in LRN_IMPLS:
    raise ValueError(f"Unknown LRN impl {impl!r}: expected one of {LRN_IMPLS}.")
  a = x.astype(jnp.float32)
  scale = alpha / size if alpha_per_size else alpha
  if impl == "matmul":
    return _banded_lrn(a, size, float(k), float(scale), float(beta)).astype(x.dtype)
  channels = a.shape[-1]
  before, after = size // 2, (size - 1) // 2
  squares = jnp.pad(jnp.square(a), [(0, 0)] * (a.ndim - 1) + [(before, after)])
  window_sum = sum(squares[..., offset : offset + channels] for offset in range(size))
  return (a * (k + scale * window_sum) ** -beta).astype(x.dtype)


def window_matrix(channels: int, size: int) -> np.ndarray:
  """The 0/1 matrix W with W[j, i] = 1 when channel j is in channel i's window, so that the window sums
  of `squares` [..., C] are `squares @ W`.

  Args:
    channels: C.
    size: channels in the window, placed as in `local_response_norm`.

  Returns:
    float32 [C, C], banded.
  """
  j, i = np.meshgrid(np.arange(channels), np.arange(channels), indexing="ij")
  return ((j >= i - size // 2) & (j <= i + (size - 1) // 2)).astype(np.float32)


def _window_sums(values, window):
  return jnp.matmul(values, window, precision=lax.Precision.HIGHEST)  # exact float32 sums of 0/1 weights


def _normaliser(a, size, k, alpha):
  """u = k + alpha * (window sum of a^2), the quantity raised to -beta."""
  return k + alpha * _window_sums(jnp.square(a), window_matrix(a.shape[-1], size))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _banded_lrn(a, size, k, alpha, beta):
  return a * _normaliser(a, size, k, alpha) ** -beta


def _banded_lrn_fwd(a, size, k, alpha, beta):
  u = _normaliser(a, size, k, alpha)
  gain = u**-beta
  return a * gain, (a, u, gain)


def _banded_lrn_bwd(size, k, alpha, beta, residuals, g):
  """d/da_j of sum_i g_i b_i = g_j u_j^-beta - 2 alpha beta a_j sum_{i: j in window(i)} g_i a_i u_i^(-beta-1)."""
  a, u, gain = residuals
  through_energy = _window_sums(g * a * gain / u, window_matrix(a.shape[-1], size).T)
  return (g * gain - 2.0 * alpha * beta * a * through_energy,)


_banded_lrn.defvjp(_banded_lrn_fwd, _banded_lrn_bwd)
