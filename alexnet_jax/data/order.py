"""Which records make each batch: the record indices of batch k as a pure, vectorised function of k.

Training reads an endless stream: epoch e is a permutation of the split drawn from (seed, e), a new one
every epoch, and the epochs follow one another without a gap (a batch may hold the end of one epoch and the
start of the next, so every example is seen equally often). The stream is dealt round-robin to the P
processes: process p takes stream elements p, p + P, p + 2P, ..., so the shards are disjoint and each epoch
is covered exactly once. Batch k of process p is its elements [k B, (k + 1) B).

Because batch k is a function of k alone, a loader's whole state is how many batches it has returned.

Why not a per-element index pipeline (grain's MapDataset): computing indices one element at a time in
Python, in the process that drives the accelerator, costs that process a large share of a core at GPU
data rates; here a batch is a few vectorised numpy calls and an epoch one permutation (the measurement is
in experiments/results/benchmark/README.md, "Choices and the evidence").
"""

import sys
from typing import Dict, List

import numpy as np

ORDER_NAME = "epoch-permutations-v1"  # saved with the loader state: a resume under another order is refused


def epoch_permutation(seed: int, epoch: int, num_records: int) -> np.ndarray:
  """The order of epoch `epoch`: a uniform permutation of range(num_records) drawn from (seed, epoch).

  numpy's Generator (PCG64 seeded through SeedSequence) is the same on every machine for the same numpy
  stream; the seed is taken modulo 2**63 so any integer config seed works."""
  rng = np.random.default_rng(np.random.SeedSequence([seed % 2**63, epoch]))
  return rng.permutation(num_records)


class TrainOrder:
  """Batch k's record indices (int64 [batch_size]) of process `process_index`'s endless training stream.

  `order[k]` is a pure function of k (see the module docstring); the permutations of the epochs in use are
  cached, so consecutive batches cost a few vectorised numpy calls."""

  def __init__(
    self,
    num_records: int,
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    process_index: int = 0,
    process_count: int = 1,
  ):
    if num_records < 1 or batch_size < 1 or not 0 <= process_index < process_count:
      raise ValueError(
        f"TrainOrder needs num_records >= 1, batch_size >= 1 and 0 <= process_index < "
        f"process_count; got {num_records}, {batch_size}, {process_index}, {process_count}."
      )
    self.num_records, self.batch_size = num_records, batch_size
    self._seed, self._shuffle = seed, shuffle
    self._process_index, self._process_count = process_index, process_count
    self._permutations: Dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return sys.maxsize  # endless

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._permutations:
      if len(self._permutations) >= 4:  # a batch spans at most a few epochs; keep the newest ones
        for old in sorted(self._permutations)[:-2]:
          del self._permutations[old]
      self._permutations[epoch] = epoch_permutation(self._seed, epoch, self.num_records)
    return self._permutations[epoch]

  def __getitem__(self, k: int) -> np.ndarray:
    if k < 0:
      raise IndexError(f"Batch numbers start at 0, got {k}.")
    local = np.arange(k * self.batch_size, (k + 1) * self.batch_size, dtype=np.int64)
    stream_position = self._process_index + self._process_count * local
    epochs, within = np.divmod(stream_position, self.num_records)
    if not self._shuffle:
      return within
    keys = np.empty_like(within)
    for epoch in np.unique(epochs):
      in_epoch = epochs == epoch
      keys[in_epoch] = self._permutation(int(epoch))[within[in_epoch]]
    return keys


def eval_order(
  num_records: int, batch_size: int, *, process_index: int = 0, process_count: int = 1
) -> List[np.ndarray]:
  """Every record once, in order, dealt round-robin to the processes (p takes p, p + P, ...), in batches
  of `batch_size`; the last batch may be short (the loader pads it and masks the padding)."""
  mine = np.arange(process_index, num_records, process_count, dtype=np.int64)
  return [mine[start : start + batch_size] for start in range(0, len(mine), batch_size)]
