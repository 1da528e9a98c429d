"""conv1's kernels as the paper shows them (figure 3) and how colourful each one is.

Figure 3 of the paper: the 96 kernels of conv1, 48 learned on each GPU; those of one GPU "largely
colour-agnostic", those of the other "largely colour-specific". `colour_share` puts a number on that, and
`tile` lays the kernels out as the figure does, one block of rows per tower.
"""

import numpy as np


def colour_share(kernels) -> np.ndarray:
  """The share of each kernel's energy that is not in its grey component, per kernel: [k, k, 3, n] -> [n].

  The grey component of a kernel is, at each tap, the mean of its three colour weights (the part that
  responds to brightness alone). A grey kernel scores 0; one that uses a single colour channel 2/3; one
  whose colour weights sum to zero at every tap (colour-opponent, blind to brightness) 1.

  Args:
    kernels: conv1's kernel [k, k, 3, n] (any float dtype).

  Returns:
    float64 [n] in [0, 1]; 0 for an all-zero kernel.

  Raises:
    ValueError: `kernels` is not of shape [k, k, 3, n].
  """
  w = np.asarray(kernels, np.float64)
  if w.ndim != 4 or w.shape[2] != 3:
    raise ValueError(f"colour_share expects conv1 kernels [k, k, 3, n], got shape {w.shape}.")
  grey = w.mean(axis=2, keepdims=True)
  energy = np.square(w).sum(axis=(0, 1, 2))
  colour = np.square(w - grey).sum(axis=(0, 1, 2))
  return np.divide(colour, energy, out=np.zeros_like(energy), where=energy > 0)


def tower_halves(kernels, towers: int):
  """The kernels [k, k, 3, n] split into `towers` groups of output channels, as the towers hold them.

  Args:
    kernels: [k, k, 3, n].
    towers: how many groups, dividing n.

  Returns:
    A list of `towers` numpy arrays [k, k, 3, n / towers], in channel order.

  Raises:
    ValueError: n does not divide by `towers`.
  """
  w = np.asarray(kernels)
  if w.shape[-1] % towers:
    raise ValueError(f"{w.shape[-1]} kernels do not split into {towers} towers.")
  return np.split(w, towers, axis=-1)


def tile(kernels, towers: int = 1, columns: int = 0, gap: int = 1, background: float = 1.0) -> np.ndarray:
  """An RGB image of every kernel, each stretched to [0, 1] on its own, as figure 3 shows them.

  Args:
    kernels: conv1's kernel [k, k, 3, n].
    towers: blocks of rows, one per tower, with a gap of 3 * `gap` between blocks.
    columns: kernels per row; 0 takes 8, or fewer when a tower holds fewer kernels.
    gap: pixels between neighbouring tiles.
    background: the value of the pixels between tiles, in [0, 1].

  Returns:
    float64 [H, W, 3], one k x k tile per kernel; a constant kernel shows as 0.5 grey.

  Raises:
    ValueError: n does not divide by `towers`.
  """
  groups = tower_halves(kernels, towers)
  per_tower = groups[0].shape[-1]
  columns = columns or min(8, per_tower)
  k = groups[0].shape[0]
  rows_per_tower = -(-per_tower // columns)
  height = towers * rows_per_tower * (k + gap) + (towers - 1) * 2 * gap
  width = columns * (k + gap) - gap
  image = np.full((height, width, 3), background)
  for t, group in enumerate(groups):
    top = t * (rows_per_tower * (k + gap) + 2 * gap)
    for i in range(per_tower):
      w = group[..., i].astype(np.float64)
      low, high = w.min(), w.max()
      w = (w - low) / (high - low) if high > low else np.full_like(w, 0.5)
      y, x = top + (i // columns) * (k + gap), (i % columns) * (k + gap)
      image[y : y + k, x : x + k] = w
  return image
