"""Local response normalisation (Krizhevsky et al., 2012, section 3.3) as a pure jnp function.

    b_i = a_i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a_j^2) ** beta

The sum runs over `n` ("size") adjacent channels centred on channel i, clipped at the edges of the N
channels. The paper's constants are k=2, n=5, alpha=1e-4, beta=0.75 (section 3.3), with alpha multiplying
the plain sum. cuda-convnet, Caffe and PyTorch's `nn.LocalResponseNorm` divide alpha by n instead:
`alpha_per_size=True` selects that convention.

The window sum is written as `size` shifted slices of the zero-padded squares. XLA fuses that with the
surrounding element-wise ops into one kernel, and it is differentiable by construction.
"""

import jax.numpy as jnp

# Section 3.3: "k = 2, n = 5, alpha = 1e-4, and beta = 0.75".
PAPER_K = 2.0
PAPER_SIZE = 5
PAPER_ALPHA = 1e-4
PAPER_BETA = 0.75


def local_response_norm(x, *, size=PAPER_SIZE, k=PAPER_K, alpha=PAPER_ALPHA, beta=PAPER_BETA, alpha_per_size=False):
  """Normalises each channel of channels-last `x` by the energy of its `size` neighbouring channels.

  Args:
    x: array [..., C], any float dtype. Computed in float32 (bf16 squares summed in bf16 lose the
      small alpha term entirely); the result has x's dtype.
    size: channels in the window, centred on i (for even sizes, size//2 before and (size-1)//2 after,
      as in PyTorch); clipped at the channel edges, so C < size is fine.
    k, alpha, beta: the formula's constants (paper section 3.3).
    alpha_per_size: divide alpha by `size` (cuda-convnet / Caffe / PyTorch convention).
  """
  if size < 1:
    raise ValueError(f"local_response_norm: size must be >= 1, got {size}.")
  a = x.astype(jnp.float32)
  channels = a.shape[-1]
  before, after = size // 2, (size - 1) // 2
  squares = jnp.pad(jnp.square(a), [(0, 0)] * (a.ndim - 1) + [(before, after)])
  window_sum = sum(squares[..., offset : offset + channels] for offset in range(size))
  scale = alpha / size if alpha_per_size else alpha
  return (a * (k + scale * window_sum) ** -beta).astype(x.dtype)
