"""`synthetic_shapes`: an embedded, procedural, learnable 10-class image dataset.

Each example is a pure function of (seed, split, index): the same bytes on every machine, no download.
A class is a *shape or texture* (disc, ring, square, triangle, plus, horizontal / vertical / diagonal
stripes, checkerboard, dot grid); its colours, position, size, rotation, period and phase, a background
gradient and pixel noise are drawn independently of the class. So the label is in the geometry: a small
convnet learns it in a CPU minute, while colour statistics alone stay at chance.
"""

import numpy as np

CLASS_NAMES = ("disc", "ring", "square", "triangle", "plus", "hstripes", "vstripes", "dstripes", "checker", "dots")
NUM_CLASSES = len(CLASS_NAMES)
SPLITS = {"train": 0, "val": 1, "test": 2}


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
  if split not in SPLITS:
    raise ValueError(f"Unknown synthetic split {split!r}: expected one of {sorted(SPLITS)}.")
  return np.random.Generator(np.random.PCG64([seed, SPLITS[split], index]))


def _colours(rng):
  """Foreground and background colours far enough apart to see the shape, independent of the class."""
  while True:
    fg, bg = rng.uniform(0, 255, size=(2, 3))
    if np.abs(fg - bg).mean() > 60:
      return fg, bg


def _mask(label: int, rng, size: int) -> np.ndarray:
  """Boolean foreground mask [size, size] for one class."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
  cy, cx = rng.uniform(0.3, 0.7, size=2)
  r = rng.uniform(0.18, 0.32)
  theta = rng.uniform(0, 2 * np.pi)
  dy, dx = yy - cy, xx - cx
  # Rotated coordinates for the shapes that have an orientation.
  u = dx * np.cos(theta) + dy * np.sin(theta)
  v = -dx * np.sin(theta) + dy * np.cos(theta)
  dist = np.sqrt(dx**2 + dy**2)
  period = rng.uniform(0.1, 0.2)
  phase = rng.uniform(0, 2 * np.pi)
  wave = lambda t: np.sin(2 * np.pi * t / period + phase) > 0
  name = CLASS_NAMES[label]
  if name == "disc":
    return dist < r
  if name == "ring":
    return (dist < r) & (dist > 0.6 * r)
  if name == "square":
    return np.maximum(np.abs(u), np.abs(v)) < 0.8 * r
  if name == "triangle":
    angles = theta + np.array([0, 2, 4]) * np.pi / 3
    return np.all([dx * np.cos(a) + dy * np.sin(a) < 0.5 * r for a in angles], axis=0)
  if name == "plus":
    arm = 0.3 * r
    return ((np.abs(u) < arm) & (np.abs(v) < r)) | ((np.abs(v) < arm) & (np.abs(u) < r))
  if name == "hstripes":
    return wave(yy)
  if name == "vstripes":
    return wave(xx)
  if name == "dstripes":
    sign = 1.0 if rng.uniform() < 0.5 else -1.0  # either diagonal
    return wave((xx + sign * yy) / np.sqrt(2))
  if name == "checker":
    return wave(xx) ^ wave(yy)
  if name == "dots":
    spacing = period * 1.5
    fy, fx = (yy / spacing + phase) % 1.0 - 0.5, (xx / spacing + phase) % 1.0 - 0.5
    return fy**2 + fx**2 < 0.09
  raise AssertionError(name)


def synthetic_example(seed: int, split: str, index: int, size: int = 64):
  """Returns (uint8 image [size, size, 3], int label) for example `index` of `split`."""
  rng = _rng(seed, split, index)
  label = int(rng.integers(NUM_CLASSES))
  fg, bg = _colours(rng)
  mask = _mask(label, rng, size)[..., None]
  yy, xx = np.mgrid[0:size, 0:size] / size
  gradient = (rng.uniform(-30, 30) * (yy - 0.5) + rng.uniform(-30, 30) * (xx - 0.5))[..., None]
  image = np.where(mask, fg, bg) + gradient + rng.normal(0, 12, size=(size, size, 3))
  return np.clip(np.rint(image), 0, 255).astype(np.uint8), label
