"""AlexNet in PyTorch, layer for layer the network `alexnet_jax.model.models.AlexNet` builds, for side-by-side
timing: the same widths (`models.scaled`), towers as `groups`, LRN per tower after the ReLU of conv1 and
conv2 (section 3.3; PyTorch's alpha is per window, so it gets the paper's alpha times n), overlapping pooling
(section 3.4), dropout where and as the model applies it (its `dropout_placement` and `dropout_scaling`,
section 4.2). `load_flax_params` copies a Flax model's parameters in, so a test can check that both compute
the same logits.
"""

import numpy as np
import torch
import torch.nn as nn

from alexnet_jax.model import models
from alexnet_jax.tools import convert
from alexnet_jax.model.lrn import PAPER_BETA, PAPER_K, PAPER_SIZE


class TowerLRN(nn.Module):
  """nn.LocalResponseNorm applied to each tower's channels on its own (models.AlexNet.lrn)."""

  def __init__(self, towers: int, alpha: float, k: float = PAPER_K):
    super().__init__()
    self.towers = towers
    self.norm = nn.LocalResponseNorm(PAPER_SIZE, alpha=alpha * PAPER_SIZE, beta=PAPER_BETA, k=k)

  def forward(self, x):
    if self.towers == 1:
      return self.norm(x)
    return torch.cat([self.norm(part) for part in x.chunk(self.towers, dim=1)], dim=1)


class Dropout(nn.Module):
  """models.AlexNet.dropout: nn.Dropout (inverted: kept units divided by keep = 1 - rate in training),
  then, for section 4.2's scaling, times keep, which scales every unit by keep at test time instead."""

  def __init__(self, rate: float, scaling: str):
    super().__init__()
    self.dropout = nn.Dropout(rate)
    self.scale = 1.0 if scaling == "in_training" else 1.0 - rate

  def forward(self, x):
    return self.dropout(x) * self.scale


class TorchAlexNet(nn.Module):
  """The forward pass of models.AlexNet (train mode: dropout on) for a preset, width and input side."""

  def __init__(self, model: models.AlexNet, image_size: int):
    super().__init__()
    spec = model.spec
    channels, previous = [], 3
    for index, conv in enumerate(spec.convs):
      features = models.scaled(conv.features, model.width_multiplier, conv.towers)
      layer = nn.Conv2d(previous, features, conv.kernel, conv.stride, conv.padding, groups=conv.towers)
      self.add_module(f"conv{index + 1}", layer)
      channels.append(features)
      previous = features
    window = 3 if model.overlapping_pool else 2
    self.pool = nn.MaxPool2d(window, 2)
    towers = spec.lrn_towers if model.lrn_per_tower else 1
    self.lrn = TowerLRN(towers, model.lrn_alpha, model.lrn_k) if model.lrn_enabled else nn.Identity()
    self.act = nn.ReLU() if model.activation == "relu" else nn.Tanh()
    self.pool5_hw = tuple(self.features(torch.zeros(1, 3, image_size, image_size)).shape[2:])
    fc = models.scaled(spec.fc_features, model.width_multiplier, 1)
    self.fc6 = nn.Linear(channels[-1] * self.pool5_hw[0] * self.pool5_hw[1], fc)
    self.fc7 = nn.Linear(fc, fc)
    self.fc8 = nn.Linear(fc, model.num_classes)
    self.dropout = Dropout(model.dropout_rate, model.dropout_scaling)
    self.dropout_on_inputs = model.dropout_placement == "fc6_fc7_inputs"

  def features(self, x):
    x = self.pool(self.lrn(self.act(self.conv1(x))))
    x = self.pool(self.lrn(self.act(self.conv2(x))))
    x = self.act(self.conv5(self.act(self.conv4(self.act(self.conv3(x))))))
    return self.pool(x)

  def forward(self, x):
    x = torch.flatten(self.features(x), 1)
    before, after = (self.dropout, nn.Identity()) if self.dropout_on_inputs else (nn.Identity(), self.dropout)
    x = after(self.act(self.fc6(before(x))))
    x = after(self.act(self.fc7(before(x))))
    return self.fc8(x)


def load_flax_params(net: TorchAlexNet, params) -> None:
  """Copies the Flax params of the same AlexNet into `net` (layouts as in alexnet_jax/tools/convert.py)."""
  by_torchvision_name = convert.flax_to_torchvision(params, pool5_hw=net.pool5_hw)
  ours = {prefix: name for name, prefix in convert.TORCHVISION_LAYERS.items()}
  state = {}
  for key, value in by_torchvision_name.items():
    prefix, kind = key.rsplit(".", 1)
    state[f"{ours[prefix]}.{kind}"] = torch.from_numpy(np.array(value, np.float32))  # a writable copy
  net.load_state_dict(state)
