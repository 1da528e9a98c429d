"""torchvision alexnet() weights -> the owt preset: logits agree with PyTorch's."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from alexnet_jax.data import augment
from alexnet_jax.model.models import AlexNet
from alexnet_jax.tools.convert import flax_to_torchvision, torchvision_to_flax
from conftest import REPO

try:
  import torch
except ImportError:  # the tests that need it skip, saying why; the others run
  torch = None
needs_torch = pytest.mark.skipif(
  torch is None, reason="torch is a test-only extra: `pip install torch` (CPU build) to run the conversion test"
)


def torchvision_alexnet(num_classes):
  """torchvision.models.alexnet() itself when torchvision imports, else the same modules built here
  (torchvision/models/alexnet.py: identical layers, so identical state_dict keys and forward pass)."""
  try:
    from torchvision.models import alexnet  # noqa: PLC0415 (optional: torchvision, where it is installed)

    return alexnet(weights=None, num_classes=num_classes)
  except Exception:  # torchvision absent or built for another torch
    nn = torch.nn

    class AlexNet(nn.Module):
      def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
          nn.Conv2d(3, 64, 11, 4, 2),
          nn.ReLU(inplace=True),
          nn.MaxPool2d(3, 2),
          nn.Conv2d(64, 192, 5, padding=2),
          nn.ReLU(inplace=True),
          nn.MaxPool2d(3, 2),
          nn.Conv2d(192, 384, 3, padding=1),
          nn.ReLU(inplace=True),
          nn.Conv2d(384, 256, 3, padding=1),
          nn.ReLU(inplace=True),
          nn.Conv2d(256, 256, 3, padding=1),
          nn.ReLU(inplace=True),
          nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
          nn.Dropout(0.5),
          nn.Linear(256 * 6 * 6, 4096),
          nn.ReLU(inplace=True),
          nn.Dropout(0.5),
          nn.Linear(4096, 4096),
          nn.ReLU(inplace=True),
          nn.Linear(4096, num_classes),
        )

      def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return AlexNet()


def random_torchvision_alexnet(num_classes, seed):
  """torchvision's AlexNet in eval mode with N(0, 0.02) weights, a larger scale than its default init, so
  every layer's signal is far from zero."""
  torch.manual_seed(seed)
  net = torchvision_alexnet(num_classes=num_classes).eval()
  with torch.no_grad():
    for p in net.parameters():
      p.normal_(0.0, 0.02)
  return net


@needs_torch
def test_torchvision_weights_give_the_same_logits():
  net = random_torchvision_alexnet(1000, seed=0)
  images = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(images)).numpy()

  variables = torchvision_to_flax(net.state_dict())
  logits = AlexNet(preset="owt", num_classes=1000, dropout_scaling="in_training").apply(
    variables, jnp.asarray(images.transpose(0, 2, 3, 1)), train=False
  )
  assert np.std(expected) > 1e-3
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_wrong_state_dict_is_a_clear_error():
  with pytest.raises(KeyError, match="Not a torchvision alexnet"):
    torchvision_to_flax({"features.0.weight": np.zeros((64, 3, 11, 11))})


@needs_torch
def test_flax_to_torchvision_inverts_the_import_exactly_and_torch_gives_the_same_logits():
  net = random_torchvision_alexnet(10, seed=1)
  original = net.state_dict()
  back = flax_to_torchvision(torchvision_to_flax(original))
  assert set(back) == set(original)
  for key, tensor in original.items():
    assert np.array_equal(back[key], tensor.numpy()), key
  # Flax params -> a fresh torchvision module: its logits are the Flax model's.
  variables = AlexNet(preset="owt", num_classes=10, dropout_scaling="in_training").init(
    jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False
  )
  fresh = torchvision_alexnet(num_classes=10).eval()
  fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in flax_to_torchvision(variables).items()})
  images = np.random.default_rng(2).normal(size=(2, 224, 224, 3)).astype(np.float32)
  flax_logits = AlexNet(preset="owt", num_classes=10, dropout_scaling="in_training").apply(
    variables, jnp.asarray(images), train=False
  )
  with torch.no_grad():
    torch_logits = fresh(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  np.testing.assert_allclose(torch_logits, np.asarray(flax_logits), rtol=1e-4, atol=1e-4 * np.abs(torch_logits).max())


def test_params_of_another_preset_are_a_clear_error_on_export():
  with pytest.raises(KeyError, match="Not the params of AlexNet\\(preset='owt'\\): missing \\['fc8'\\]"):
    flax_to_torchvision({"params": {n: {} for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")}})


@needs_torch
def test_predict_runs_torchvision_weights_with_the_users_class_names(tmp_path):
  """predict --torchvision_weights: the owt preset with the file's weights; its top class is the one
  torchvision's own module gives the same photo, preprocessed as torchvision's recipe (256, centre 224)."""
  net = random_torchvision_alexnet(3, seed=0)
  torch.save(net.state_dict(), tmp_path / "weights.pth")
  (tmp_path / "names.txt").write_text("cat\ndog\nfox\n")
  photo = np.random.default_rng(0).integers(0, 256, (256, 256, 3)).astype(np.uint8)
  Image.fromarray(photo).save(tmp_path / "photo.png")
  centre = photo[16:240, 16:240].astype(np.float32)
  x = (centre - np.array(augment.IMAGENET_MEAN_RGB)) / np.array(augment.IMAGENET_STD_RGB)
  with torch.no_grad():
    expected = ["cat", "dog", "fox"][int(net(torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))).argmax())]
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "alexnet_jax.tools.predict",
      "--torchvision_weights=~/weights.pth",  # as a shell passes it on: ~ is the home directory
      "--class_names=~/names.txt",
      "--top=1",
      str(tmp_path / "photo.png"),
    ],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=REPO,
    env={**os.environ, "HOME": str(tmp_path)},
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().startswith(f"{tmp_path / 'photo.png'}: {expected} ")
