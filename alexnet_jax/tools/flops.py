"""Counting the matrix FLOPs of a JAX function from its jaxpr: convolutions and matrix products.

Utilisation ("achieved TFLOP/s against the machine's matmul rate") needs the model's FLOPs on every
backend. XLA's own count (`compiled.cost_analysis()`) is backend-specific: on GPUs it leaves out the
convolutions handed to cuDNN (the figure is in experiments/results/benchmark/README.md). The jaxpr is the
same everywhere, so the count is too.

What is counted: 2 FLOPs (a multiply and an add) per multiply-accumulate of every `conv_general_dilated`
and `dot_general`, including those in gradients; element-wise work (ReLU, LRN, pooling, the optimiser) is
not, as is usual for model FLOPs. Each convolution counts only the products with real input elements:
taps that fall on padding, or between the elements of a dilated input, are left out. With that rule a
convolution's two gradients cost exactly what its forward pass costs (JAX computes the input gradient of
a strided convolution as a convolution of the dilated cotangent), and the count agrees with XLA's
CPU cost analysis. For AlexNet the total is 7-8% below the common "output size x kernel area" count,
which counts the padded border taps too (9-10% of those of conv2-conv5).
"""

import functools
import math
from typing import Any, Callable

import jax
import numpy as np
import optax


def _valid_taps(
  in_size: int, out_size: int, kernel: int, stride: int, pad_low: int, lhs_dilation: int, rhs_dilation: int
) -> int:
  """Pairs (output position, kernel tap) along one spatial dimension that land on a real input element."""
  positions = np.arange(out_size)[:, None] * stride + np.arange(kernel)[None, :] * rhs_dilation - pad_low
  real = (positions >= 0) & (positions <= (in_size - 1) * lhs_dilation) & (positions % lhs_dilation == 0)
  return int(real.sum())


def conv_flops(eqn) -> int:
  """FLOPs of one convolution (see the module docstring for what counts).

  Args:
    eqn: a jaxpr equation of `conv_general_dilated`.

  Returns:
    2 x its multiply-accumulates with real input elements.
  """
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  out = eqn.outvars[0].aval.shape
  params = eqn.params
  lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
  taps = 1
  for d in range(len(lhs_spec) - 2):
    taps *= _valid_taps(
      in_size=lhs[lhs_spec[2 + d]],
      out_size=out[out_spec[2 + d]],
      kernel=rhs[rhs_spec[2 + d]],
      stride=params["window_strides"][d],
      pad_low=params["padding"][d][0],
      lhs_dilation=params["lhs_dilation"][d],
      rhs_dilation=params["rhs_dilation"][d],
    )
  # Each output element of each output feature sums over the kernel's input features (already divided by
  # feature_group_count in rhs's shape) at every real tap; batch groups only shrink the output batch.
  return 2 * out[out_spec[0]] * out[out_spec[1]] * rhs[rhs_spec[1]] * taps


def dot_flops(eqn) -> int:
  """FLOPs of one matrix product.

  Args:
    eqn: a jaxpr equation of `dot_general`.

  Returns:
    2 x output elements x contracted size.
  """
  lhs = eqn.invars[0].aval.shape
  (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
  out = eqn.outvars[0].aval.shape
  return 2 * math.prod(out) * math.prod(lhs[d] for d in lhs_contracting)


def _sub_jaxprs(value):
  """The jaxprs inside one equation parameter (a jaxpr, a closed jaxpr, or a tuple of them)."""
  if hasattr(value, "eqns"):
    yield value
  elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for item in value:
      yield from _sub_jaxprs(item)


def jaxpr_flops(jaxpr) -> int:
  """Matrix FLOPs of a jaxpr, nested ones included.

  Args:
    jaxpr: a jaxpr (`jax.make_jaxpr(f)(*args).jaxpr`).

  Returns:
    The FLOPs of its convolutions and matrix products: a scan body counts `length` times, a `cond` its
    most expensive branch, a while loop's body once (its trip count is not known before it runs).
  """
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      total += conv_flops(eqn)
    elif name == "dot_general":
      total += dot_flops(eqn)
    elif name == "cond":
      total += max((jaxpr_flops(j) for j in _sub_jaxprs(eqn.params["branches"])), default=0)
    else:
      inner = sum(jaxpr_flops(j) for value in eqn.params.values() for j in _sub_jaxprs(value))
      total += inner * int(eqn.params.get("length", 1)) if name == "scan" else inner
  return total


def count_flops(fn: Callable, *args: Any, **kwargs: Any) -> int:
  """Matrix FLOPs of one call of `fn`, traced (not run).

  Args:
    fn: a JAX-traceable function.
    *args: its positional arguments: arrays or jax.ShapeDtypeStruct.
    **kwargs: its keyword arguments, held fixed (not traced).

  Returns:
    2 x the multiply-accumulates of its convolutions and matrix products (module docstring).
  """
  return jaxpr_flops(jax.make_jaxpr(functools.partial(fn, **kwargs))(*args).jaxpr)


def train_step_flops(model, params, images, labels, dropout_key) -> int:
  """Matrix FLOPs of one training step of a classifier: forward, loss and the gradient for `params`
  (not for the images, which no step needs).

  Args:
    model: a Flax classifier whose `apply(variables, x, train=True, rngs={"dropout": key})` gives logits.
    params: its parameters (arrays or jax.ShapeDtypeStruct, as the rest).
    images: a batch of inputs [B, H, W, C].
    labels: their integer labels [B].
    dropout_key: a PRNG key for dropout.

  Returns:
    The step's matrix FLOPs (see `count_flops`).
  """

  def loss_fn(p, x, y, key):
    logits = model.apply({"params": p}, x, train=True, rngs={"dropout": key})
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(np.float32), y).mean()

  return count_flops(jax.grad(loss_fn), params, images, labels, dropout_key)
