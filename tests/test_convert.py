"""torchvision alexnet() weights -> the owt preset: logits agree with PyTorch's."""

import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.convert import torchvision_to_flax
from alexnet_jax.models import AlexNet

try:
  import torch
except ImportError:  # the tests that need it skip, saying why; the others run
  torch = None
needs_torch = pytest.mark.skipif(
    torch is None, reason="torch is a test-only extra: `pip install torch` (CPU build) to run the conversion test")


def torchvision_alexnet(num_classes):
  """torchvision.models.alexnet() itself when torchvision imports, else the same modules built here
  (torchvision/models/alexnet.py: identical layers, so identical state_dict keys and forward pass)."""
  try:
    from torchvision.models import alexnet
    return alexnet(weights=None, num_classes=num_classes)
  except Exception:  # torchvision absent or built for another torch
    nn = torch.nn

    class AlexNet(nn.Module):

      def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, num_classes))

      def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return AlexNet()


@needs_torch
def test_torchvision_weights_give_the_same_logits():
  torch.manual_seed(0)
  net = torchvision_alexnet(num_classes=1000).eval()
  # Random weights with a larger scale than the default init so every layer's signal is far from zero.
  with torch.no_grad():
    for p in net.parameters():
      p.normal_(0.0, 0.02)
  images = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(images)).numpy()

  variables = torchvision_to_flax(net.state_dict())
  logits = AlexNet(preset="owt", num_classes=1000).apply(
      variables, jnp.asarray(images.transpose(0, 2, 3, 1)), train=False)
  assert np.std(expected) > 1e-3
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_wrong_state_dict_is_a_clear_error():
  with pytest.raises(KeyError, match="Not a torchvision alexnet"):
    torchvision_to_flax({"features.0.weight": np.zeros((64, 3, 11, 11))})
