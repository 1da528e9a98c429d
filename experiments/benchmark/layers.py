"""Section `layers`: where a CPU training step's time goes, layer by layer, in both frameworks.

Each layer of the paper network (width, crop and batch as in vs_torch) is timed alone, forward and
backward (the gradients of its parameters and, but for conv1 whose input is the data, of its input, from a
fixed cotangent), in JAX with the
implementation training uses (alexnet_jax.model.models.TowerConv, lrn.local_response_norm, pooling.max_pool) and
in PyTorch with the modules torch_net.TorchAlexNet uses, in alternating rounds. The layers' sum against the
whole step says how much is left for the loss, the optimiser and what runs between layers."""

from flax import linen
import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax.model import models
from alexnet_jax.model.lrn import local_response_norm
from alexnet_jax.model.pooling import max_pool
from experiments.benchmark.timing import timed


def layer_shapes(model, crop, batch):
  """[(name, kind, input shape NHWC, settings)] of the paper network at this crop, in order."""
  x = jnp.zeros((batch, crop, crop, 3), jnp.float32)
  variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), x)
  _, state = jax.eval_shape(lambda v, p: model.apply(p, v, train=False, mutable=["intermediates"]), x, variables)
  shape = lambda name: state["intermediates"][name][0].shape
  spec = model.spec
  convs = [(f"conv{i + 1}", spec.convs[i]) for i in range(5)]
  inputs = [x.shape, shape("pool1"), shape("pool2"), shape("relu3"), shape("relu4")]
  layers = []
  for (name, conv), in_shape in zip(convs, inputs):
    features = variables["params"][name]["bias"].shape[0]
    layers.append((name, "conv", in_shape, dict(features=features, conv=conv)))
    if name in ("conv1", "conv2"):
      layers.append((f"lrn{name[-1]}", "lrn", shape(f"relu{name[-1]}"), {}))
      layers.append((f"pool{name[-1]}", "pool", shape(f"relu{name[-1]}"), {}))
  layers.append(("pool5", "pool", shape("relu5"), {}))
  fc_in = int(np.prod(shape("pool5")[1:]))
  for name, fan_in in (("fc6", fc_in), ("fc7", shape("relu6")[1]), ("fc8", shape("relu7")[1])):
    features = variables["params"][name]["bias"].shape[0]
    layers.append((name, "dense", (batch, fan_in), dict(features=features)))
  return layers


def jax_layer(model, kind, in_shape, settings):
  """(run, sync) of one layer's forward and backward in JAX, jitted."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=in_shape), jnp.float32)
  if kind == "conv":
    c = settings["conv"]
    layer = models.TowerConv(
      settings["features"],
      c.kernel,
      c.stride,
      c.padding,
      c.towers,
      model.tower_impl,
      model.conv1_impl if c.kernel == 11 else "direct",
    )
    params = layer.init(jax.random.key(0), x)
    f = lambda p, v: jax.nn.relu(layer.apply(p, v))
  elif kind == "dense":
    layer = linen.Dense(settings["features"])
    params = layer.init(jax.random.key(0), x)
    f = lambda p, v: layer.apply(p, v)
  elif kind == "lrn":
    towers = model.spec.lrn_towers
    params = {}
    f = lambda p, v: local_response_norm(
      v.reshape(v.shape[:-1] + (towers, v.shape[-1] // towers)), impl=model.lrn_impl
    ).reshape(v.shape)
  else:
    params = {}
    f = lambda p, v: max_pool(v, 3 if model.overlapping_pool else 2, 2, model.pool_impl)
  out = jax.eval_shape(f, params, x)
  cotangent = jnp.asarray(rng.normal(size=out.shape), jnp.float32)

  first = in_shape[-1] == 3  # conv1: the data needs no gradient

  @jax.jit
  def forward_backward(p, v):
    if first:
      return jax.vjp(lambda q: f(q, v), p)[1](cotangent)
    _, pullback = jax.vjp(f, p, v)
    return pullback(cotangent)

  box = {}

  def run():
    box["g"] = forward_backward(params, x)

  return run, lambda: jax.block_until_ready(box["g"])


def torch_layer(model, kind, in_shape, settings, channels_last):
  """(run, sync) of one layer's forward and backward in PyTorch (float32, the CPU)."""
  import torch  # noqa: PLC0415 (optional: PyTorch)
  import torch.nn as nn  # noqa: PLC0415 (optional: PyTorch)

  from experiments.benchmark import torch_net  # noqa: PLC0415 (it imports PyTorch)

  if kind == "dense":
    module, x = nn.Linear(in_shape[1], settings["features"]), torch.randn(*in_shape)
  else:
    b, h, w, c = in_shape
    x = torch.randn(b, c, h, w)
    if kind == "conv":
      s = settings["conv"]
      module = nn.Sequential(
        nn.Conv2d(c, settings["features"], s.kernel, s.stride, s.padding, groups=s.towers), nn.ReLU()
      )
    elif kind == "lrn":
      module = torch_net.TowerLRN(model.spec.lrn_towers, model.lrn_alpha)
    else:
      module = nn.MaxPool2d(3 if model.overlapping_pool else 2, 2)
    if channels_last:
      module, x = module.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
  x.requires_grad_(kind != "conv" or x.shape[1] != 3)  # conv1: the data needs no gradient
  cotangent = torch.randn_like(module(x))

  def run():
    for p in module.parameters():
      p.grad = None
    x.grad = None
    module(x).backward(cotangent)

  return run, lambda: None


def layer_profile(model, crop, batch, rounds, steps, warmup, channels_last=True):
  """Milliseconds of each layer's forward and backward in JAX and PyTorch, best of `rounds` rounds."""
  rows = []
  for name, kind, in_shape, settings in layer_shapes(model, crop, batch):
    runners = {
      "jax": jax_layer(model, kind, in_shape, settings),
      "torch": torch_layer(model, kind, in_shape, settings, channels_last),
    }
    for run, sync in runners.values():
      timed(run, 0, warmup, repeats=0, sync=sync)
    best = dict.fromkeys(runners, float("inf"))
    for _ in range(rounds):
      for framework, (run, sync) in runners.items():
        best[framework] = min(best[framework], timed(run, steps, 0, repeats=1, sync=sync))
    rows.append(
      {
        "layer": name,
        "kind": kind,
        "input": list(in_shape),
        "jax_ms": best["jax"] * 1e3,
        "torch_ms": best["torch"] * 1e3,
      }
    )
  return rows
