"""Loaders over prepared TFDS data sources: host batches of fixed-size uint8 images. No TensorFlow.

order.py decides which records make each batch: training takes a seeded permutation of the split, a new
one every epoch, as an endless stream split between processes (disjoint shards, each epoch covered exactly
once); evaluation takes every example once, in order. Batch k's record indices are a pure function of k, so
a loader's whole state is how many batches it has returned (`get_state()` / `set_state()`): saved with a
checkpoint, a resumed run sees exactly the batches it would have seen, with any number of workers.

Decoding happens in worker processes that hand batches over through persistent shared memory
(decode_pool.py), or in this process with num_workers=0.

Evaluation batches have a fixed shape, padded with masked examples (`mask` 0), and every process yields
the same number of them, so nothing is dropped or counted twice.
"""

import dataclasses
import math
import os
from typing import Iterator, Optional, Sequence

import numpy as np

from alexnet_jax.data import order, sources
from alexnet_jax.data.decode_pool import DecodePool


def default_num_workers() -> int:
  """One decoding process per core but one (which runs the training loop); at least 1."""
  return max(1, (os.cpu_count() or 2) - 1)


def decode_into(serialized: Sequence[bytes], images: np.ndarray, labels: np.ndarray) -> None:
  """Serialized examples -> images[i] (uint8 [S, S, 3]) and labels[i]; each image's shorter side brought
  to S and centre-cropped if it is not S x S already. Decoding straight into the batch array leaves the
  JPEG decode as nearly the whole per-example cost."""
  for i, record in enumerate(serialized):
    example = sources.parse_example(record, file_name=False)
    sources.decode_fitted_into(example["image"], images[i])
    labels[i] = example["label"]


def decode_batch(serialized: Sequence[bytes], *, image_size: int):
  """Serialized examples -> {'image': uint8 [B, S, S, 3], 'label': int32 [B]} (see decode_into)."""
  images = np.empty((len(serialized), image_size, image_size, 3), np.uint8)
  labels = np.empty((len(serialized),), np.int32)
  decode_into(serialized, images, labels)
  return {"image": images, "label": labels}


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
  data_dir: str
  name: str
  split: str
  batch_size: int  # per process
  image_size: int = 0  # 0: the stored size
  seed: int = 0
  num_workers: int = -1  # -1: default_num_workers()
  shuffle: bool = True
  process_index: int = 0
  process_count: int = 1

  @property
  def workers(self) -> int:
    return default_num_workers() if self.num_workers < 0 else self.num_workers


def host_image_size(requested: int, info: sources.DatasetInfo) -> int:
  """The side of the square uint8 images a loader yields: `requested`, or the stored size when it is 0."""
  size = requested or info.image_size
  if not size:
    raise sources.DatasetError(
      f"Dataset {info.name!r} stores images of varied sizes: set "
      f"--config.dataset.image_size (e.g. 256, the paper's) or prepare it with "
      f"--image_size=256."
    )
  return size


class BatchLoader:
  """An iterator of host batches: batch k holds the records `index_batches[k]`, decoded by a DecodePool
  of `num_workers` processes, or in this process when num_workers is 0.

  `get_state()` is the number of batches returned; `set_state()` goes back (or forward) to such a count.
  `close()` stops the workers (a loader that is garbage-collected stops them too).
  """

  def __init__(
    self,
    index_batches: Sequence[np.ndarray],
    info: sources.DatasetInfo,
    split: str,
    *,
    image_size: int,
    batch_size: int,
    num_workers: int,
    source=None,
  ):
    """`source`: the split, already opened by the caller (used when decoding in this process)."""
    self._index_batches = index_batches
    self._length = len(index_batches)  # sys.maxsize for the endless training stream
    self._image_size = image_size
    self._returned = self._submitted = 0
    self._pool: Optional[DecodePool] = None
    self._source = None
    if num_workers > 0:
      self._pool = DecodePool(
        sources.open_split,
        (info, split),
        decode_into,
        image_size=image_size,
        batch_size=batch_size,
        num_workers=num_workers,
      )
    else:
      self._source = source if source is not None else sources.open_split(info, split)

  def _keys(self, k: int):
    return np.asarray(self._index_batches[k]).tolist()

  def __iter__(self):
    return self

  def __next__(self):
    if self._returned >= self._length:
      raise StopIteration
    k = self._returned
    self._returned += 1  # a batch whose decoding fails counts too: the next call moves on in order
    if self._pool is None:
      return decode_batch(sources.read_records(self._source, self._keys(k)), image_size=self._image_size)
    while self._submitted < min(self._length, k + self._pool.capacity):
      self._pool.submit(self._submitted, self._keys(self._submitted))
      self._submitted += 1
    return self._pool.collect(k)

  def get_state(self) -> dict:
    return {"batches_returned": self._returned, "order": order.ORDER_NAME}

  def set_state(self, state: dict) -> None:
    if "batches_returned" not in state or state.get("order") != order.ORDER_NAME:
      raise sources.DatasetError(
        f"The data-iterator state {state!r} was written by an older input pipeline "
        f"and cannot position this one: resume with the version that wrote it, or "
        f"start a new workdir."
      )
    for k in range(self._returned, self._submitted):  # batches in flight: collect and drop them
      try:
        self._pool.collect(k)
      except Exception:  # their errors no longer matter
        pass
    self._returned = self._submitted = int(state["batches_returned"])

  def worker_pids(self) -> list:
    """Process ids of the decoding workers (none when decoding in this process): for monitoring."""
    return self._pool.pids() if self._pool is not None else []

  def close(self) -> None:
    if self._pool is not None:
      self._pool.close()


def check_split_holds_a_batch(info: sources.DatasetInfo, split: str, num_examples: int, global_batch: int) -> None:
  """Training draws whole global batches: a split with fewer examples than one cannot feed a step."""
  if num_examples < global_batch:
    raise sources.DatasetError(
      f"Split {split!r} of {info.name!r} has {num_examples} examples, fewer than one "
      f"batch of {global_batch} (the global batch, all processes together): lower "
      f"--config.batch_size or use a larger split."
    )


def train_loader(config: LoaderConfig) -> BatchLoader:
  """Opens the training batches of a prepared dataset's split, drawn in the seeded epoch order.

  Args:
    config: the dataset, split, batch size, host image size S, seed, workers and this process's shard.

  Returns:
    An endless BatchLoader of {'image': uint8 [B, S, S, 3], 'label': int32 [B]}; its get_state/set_state
    resume it at the same batch, and close() stops its workers.
  """
  info = sources.dataset_info(config.data_dir, config.name)
  size = host_image_size(config.image_size, info)
  source = sources.open_split(info, config.split)
  check_split_holds_a_batch(info, config.split, len(source), config.batch_size * config.process_count)
  index_batches = order.TrainOrder(
    len(source),
    config.batch_size,
    seed=config.seed,
    shuffle=config.shuffle,
    process_index=config.process_index,
    process_count=config.process_count,
  )
  return BatchLoader(
    index_batches,
    info,
    config.split,
    image_size=size,
    batch_size=config.batch_size,
    num_workers=config.workers,
    source=source,
  )


def pad_batch(batch, *, batch_size: int):
  """Pads a short final batch to `batch_size` with zero images and adds `mask` (1 real, 0 padding)."""
  n = batch["label"].shape[0]
  padded = {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
  padded["mask"] = (np.arange(batch_size) < n).astype(np.float32)
  return padded


def eval_num_batches(num_examples: int, batch_size: int, process_count: int) -> int:
  """Batches per process so that the largest process shard fits: the same count on every process."""
  return max(1, math.ceil(math.ceil(num_examples / process_count) / batch_size))


def eval_batches(config: LoaderConfig) -> Iterator[dict]:
  """Every example of a prepared dataset's split once, in fixed-shape batches.

  Args:
    config: the dataset, split, batch size, host image size S, workers and this process's shard.

  Returns:
    An iterator of {'image': uint8 [B, S, S, 3], 'label': int32 [B], 'mask': float32 [B]} (1 real, 0
    padding), the same number of batches on every process.
  """
  info = sources.dataset_info(config.data_dir, config.name)
  size = host_image_size(config.image_size, info)
  source = sources.open_split(info, config.split)
  num_batches = eval_num_batches(len(source), config.batch_size, config.process_count)
  index_batches = order.eval_order(
    len(source), config.batch_size, process_index=config.process_index, process_count=config.process_count
  )
  produced = 0
  if index_batches:
    loader = BatchLoader(
      index_batches,
      info,
      config.split,
      image_size=size,
      batch_size=config.batch_size,
      num_workers=min(config.workers, len(index_batches)),
      source=source,
    )
    try:
      for batch in loader:
        produced += 1
        yield pad_batch(batch, batch_size=config.batch_size)
    finally:
      loader.close()
  empty = {
    "image": np.zeros((config.batch_size, size, size, 3), np.uint8),
    "label": np.zeros((config.batch_size,), np.int32),
    "mask": np.zeros((config.batch_size,), np.float32),
  }
  for _ in range(num_batches - produced):
    yield empty
