"""The benchmark's PyTorch AlexNet computes what alexnet_jax's does, so the side-by-side timing compares one
network: the same Flax parameters copied in give the same logits (dropout off)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from alexnet_jax.model import models  # noqa: E402
from experiments.benchmark import torch_net  # noqa: E402


@pytest.mark.parametrize(
  "options,size",
  [
    (dict(preset="paper"), 67),  # two towers, LRN per tower, overlapping pooling
    (dict(preset="paper", overlapping_pool=False, lrn_alpha=1e-3), 83),
    (dict(preset="paper", lrn_k=1.0), 67),
    (dict(preset="paper", dropout_placement="fc6_fc7_inputs", dropout_scaling="in_training"), 67),
    (dict(preset="owt"), 64),  # conv1 padding, no LRN
  ],
)
def test_torch_alexnet_gives_the_flax_models_logits(options, size):
  model = models.AlexNet(num_classes=7, width_multiplier=0.25, init_scheme="he", **options)
  x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32) * 40  # LRN must bite
  shapes = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), x)["params"]
  rng = np.random.default_rng(1)  # any parameters serve, He-scaled so the activations stay in range
  params = jax.tree.map(
    lambda s: rng.normal(size=s.shape).astype(np.float32) * (2 / np.prod(s.shape[:-1])) ** 0.5, shapes
  )
  want = np.asarray(jax.jit(lambda p, v: model.apply({"params": p}, v, train=False))(params, jnp.asarray(x)))
  net = torch_net.TorchAlexNet(model, size).eval()
  torch_net.load_flax_params(net, params)
  with torch.no_grad():
    got = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  assert got.shape == want.shape == (2, 7)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_the_lrn_towers_are_normalised_apart():
  """Per tower: channels next to the tower boundary are not normalised by the other tower's."""
  x = torch.randn(1, 8, 3, 3) * 100
  per_tower = torch_net.TowerLRN(2, 1e-4)(x)
  whole = torch_net.TowerLRN(1, 1e-4)(x)
  # Channels 0-1 and 6-7 have windows inside their tower; 2-5 reach across the boundary when normalised whole.
  assert torch.allclose(per_tower[:, :2], whole[:, :2]) and torch.allclose(per_tower[:, 6:], whole[:, 6:])
  assert not any(torch.allclose(per_tower[:, c], whole[:, c]) for c in range(2, 6))
