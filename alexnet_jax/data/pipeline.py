"""grain loaders over prepared TFDS data sources: host batches of fixed-size uint8 images. No TensorFlow.

Training: a seeded permutation of the split, a new one every epoch (grain's per-epoch reshuffle), an
endless stream split between processes (process p takes elements p, p + P, p + 2P, ... so the shards are
disjoint and each epoch is covered exactly once), decoded and batched in worker processes. The iterator's
state (`get_state()` / `set_state()`) is a few integers: saved with a checkpoint, a resumed run sees exactly
the batches it would have seen.

Evaluation: every example exactly once, in order, in fixed-shape batches padded with masked examples
(`mask` 0), and the same number of batches on every process, so nothing is dropped or counted twice.
"""

import dataclasses
import functools
import math
import os
from typing import Iterator, Sequence

import grain
import numpy as np

try:  # grain's array backed by shared memory: a worker's batch built in one is sent without a copy
  from grain.python import SharedMemoryArray
except ImportError:  # pragma: no cover - other grain versions: plain arrays, copied by grain
  SharedMemoryArray = None

from alexnet_jax.data import sources


def default_num_workers() -> int:
  """One decoding process per core but one (which runs the training loop); at least 1."""
  return max(1, (os.cpu_count() or 2) - 1)


def decode_batch(serialized: Sequence[bytes], *, image_size: int, shared_memory: bool = False):
  """Serialized examples -> {'image': uint8 [B, S, S, 3], 'label': int32 [B]}; each image's shorter side
  brought to S and centre-cropped if it is not S x S already.

  Used as grain's batch_fn: one call per batch reads the records together and decodes straight into the
  batch array, so the per-example cost is the JPEG decode and little else. `shared_memory` (for batches
  that a grain worker sends straight on) allocates that array in shared memory: grain then passes it to
  the training process as it is, where it would otherwise copy every batch once more (profiled: that copy
  cost a worker as much CPU as the decoding)."""
  shape = (len(serialized), image_size, image_size, 3)
  if shared_memory and SharedMemoryArray is not None:
    images = SharedMemoryArray(shape, np.uint8)
  else:
    images = np.empty(shape, np.uint8)
  labels = np.empty((len(serialized),), np.int32)
  for i, record in enumerate(serialized):
    example = sources.parse_example(record)
    image = sources.decode_image(example["image"])
    if image.shape[:2] != (image_size, image_size):
      image = sources.fit_to_size(image, image_size)
    images[i] = image
    labels[i] = example["label"]
  return {"image": images, "label": labels}


def read_and_decode_batch(indices: Sequence[int], *, source, image_size: int, shared_memory: bool = False):
  """Record indices -> a decoded batch (`decode_batch`), reading all the batch's records in one call.

  The grain datasets carry indices, not records: one `__getitems__` per batch costs about half of what
  reading record by record does, and grain's per-element bookkeeping on integers is negligible."""
  keys = [int(i) for i in indices]
  records = source.__getitems__(keys) if hasattr(source, "__getitems__") else [source[k] for k in keys]
  return decode_batch(records, image_size=image_size, shared_memory=shared_memory)


def shuffled_shard(ds: grain.MapDataset, *, seed: int, process_index: int, process_count: int,
                   shuffle: bool = True) -> grain.MapDataset:
  """An endless stream of `ds`, reshuffled every epoch from `seed`; this process's share of it."""
  if shuffle:
    ds = ds.shuffle(seed=seed)
  return ds.repeat()[process_index::process_count]


def _iter_dataset(ds: grain.MapDataset, num_workers: int) -> grain.IterDataset:
  read = grain.ReadOptions(num_threads=4 if num_workers == 0 else 1, prefetch_buffer_size=8)
  it = ds.to_iter_dataset(read)
  if num_workers > 0:
    from absl import flags
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; outside absl.app use the defaults
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2))
  return it


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


def _image_size(config: LoaderConfig, info: sources.DatasetInfo) -> int:
  size = config.image_size or info.image_size
  if not size:
    raise sources.DatasetError(f"Dataset {info.name!r} stores images of varied sizes: set "
                               f"--config.dataset.image_size (e.g. 256, the paper's) or prepare it with "
                               f"--image_size=256.")
  return size


def train_loader(config: LoaderConfig) -> grain.IterDataset:
  """An endless IterDataset of {'image': uint8 [B, S, S, 3], 'label': int32 [B]}; `iter()` it."""
  info = sources.dataset_info(config.data_dir, config.name)
  size = _image_size(config, info)
  source = sources.open_split(info, config.split)
  ds = grain.MapDataset.range(len(source))
  if len(ds) < config.batch_size * config.process_count:
    raise sources.DatasetError(f"Split {config.split!r} of {info.name!r} has {len(ds)} examples, fewer than "
                               f"one global batch of {config.batch_size * config.process_count}: lower "
                               f"--config.batch_size or use a larger split.")
  ds = shuffled_shard(ds, seed=config.seed, process_index=config.process_index,
                      process_count=config.process_count, shuffle=config.shuffle)
  # Batches leave the workers as they are built (no later map), so they can be built in shared memory.
  ds = ds.batch(config.batch_size, drop_remainder=True,
                batch_fn=functools.partial(read_and_decode_batch, source=source, image_size=size,
                                           shared_memory=config.workers > 0))
  return _iter_dataset(ds, config.workers)


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
  """Every example of the split once, in fixed-shape batches with `mask`; equal batch counts per process."""
  info = sources.dataset_info(config.data_dir, config.name)
  size = _image_size(config, info)
  source = sources.open_split(info, config.split)
  ds = grain.MapDataset.range(len(source))
  num_batches = eval_num_batches(len(ds), config.batch_size, config.process_count)
  ds = ds[config.process_index::config.process_count]
  ds = ds.batch(config.batch_size, drop_remainder=False,
                batch_fn=functools.partial(read_and_decode_batch, source=source, image_size=size))
  ds = ds.map(functools.partial(pad_batch, batch_size=config.batch_size))
  produced = 0
  for batch in _iter_dataset(ds, config.workers):
    produced += 1
    yield batch
  empty = {"image": np.zeros((config.batch_size, size, size, 3), np.uint8),
           "label": np.zeros((config.batch_size,), np.int32), "mask": np.zeros((config.batch_size,), np.float32)}
  for _ in range(num_batches - produced):
    yield empty
