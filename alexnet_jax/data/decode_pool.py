"""Decoding worker processes that hand batches over through persistent shared memory.

grain's `mp_prefetch` sends every batch in a new shared-memory block, and the kernel faults in and zeroes
each page of a new block on first write, a cost comparable to decoding the image (`experiments/shm_cost.py`;
figures in experiments/results/benchmark/README.md). Here each worker owns a
few blocks ("slots") for the life of the loader, so the pages are faulted once: the training process sends
a worker the record indices of a batch and a slot; the worker reads the records, decodes into that slot and
answers with the slot number; the training process copies the batch out and the slot is free again.

Batch k always goes to worker k % N, slot (k // N) % S, and is collected in order, so the output order is
the submission order whatever the workers' speeds. `BatchLoader` (pipeline.py) decides which indices make
batch k and keeps the checkpointable position.
"""

import contextlib
import ctypes
import gc
import multiprocessing
import queue
import signal
import sys
import threading
import weakref
from multiprocessing import shared_memory
from typing import Callable, List, Sequence, Tuple

import numpy as np

from alexnet_jax.data.sources import DatasetError, read_records

_POLL_SECONDS = 1.0  # how often a waiting process checks that the other side is still alive


def _slot_arrays(buffer, capacity: int, image_size: int):
  """The image and label arrays laid out in one slot's buffer."""
  images = np.ndarray((capacity, image_size, image_size, 3), np.uint8, buffer=buffer)
  labels = np.ndarray((capacity,), np.int32, buffer=buffer, offset=images.nbytes)
  return images, labels


def slot_bytes(capacity: int, image_size: int) -> int:
  return capacity * image_size * image_size * 3 + capacity * 4


def _describe(error: Exception) -> Tuple[bool, str]:
  """An exception as plain data (any exception pickles this way): (is a DatasetError, message)."""
  return isinstance(error, DatasetError), str(error) if isinstance(error, DatasetError) else (
    f"{type(error).__name__}: {error}"
  )


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(trim_threshold: int = 64 << 20, mmap_threshold: int = 16 << 20) -> bool:
  """Lets this process's C heap keep up to `trim_threshold` bytes of freed memory instead of returning it
  to the kernel after every large free. Returns whether the C library took the settings (glibc does).

  A JPEG decode allocates its output and the decoder's buffers, then frees them. In a process spawned to
  do nothing but decode, glibc's default thresholds (128 KB, adjusted as it goes) handed that memory back
  after each image and faulted it in again for the next, page faults that slowed the decode (figures in
  experiments/results/benchmark/README.md). A worker holds at most `trim_threshold` of freed heap more;
  blocks above `mmap_threshold` still get their own mapping."""
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError, TypeError):  # no C library to load, or one without mallopt (macOS)
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  return bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold))


def _worker_main(
  open_source: Callable,
  source_args: tuple,
  decode_into: Callable,
  image_size: int,
  capacity: int,
  slot_names: Sequence[str],
  requests,
  responses,
):
  """A worker: opens its own data source, then decodes requested batches into its slots until None.

  Ctrl-C reaches the whole process group: the worker ignores it (from birth when started from the main
  thread, see `_sigint_ignored`; from here otherwise), so the training process can save a checkpoint and
  stop the workers itself. A worker whose training process has died stops on its own."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  keep_freed_memory()
  blocks = [shared_memory.SharedMemory(name=name) for name in slot_names]
  slots = [_slot_arrays(block.buf, capacity, image_size) for block in blocks]
  try:
    try:
      source, open_error = open_source(*source_args), None
    except Exception as e:  # the source would not open: every request gets this answer
      source, open_error = None, _describe(e)
    # The imports (TFDS, array_record, protobuf) left a large heap of long-lived objects; without this,
    # Python's periodic full collections rescanned all of it (seen with py-spy).
    gc.freeze()
    for slot, keys in _requests_until_stopped(requests):
      if open_error is not None:
        responses.put((slot, 0, open_error))
        continue
      try:
        images, labels = slots[slot]
        decode_into(read_records(source, keys), images[: len(keys)], labels[: len(keys)])
        responses.put((slot, len(keys), None))
      except Exception as e:  # reported to the training process, which raises it there
        responses.put((slot, 0, _describe(e)))
      finally:
        images = labels = None
  finally:
    slots = None  # the arrays export the buffers; they must go before the blocks close
    for block in blocks:
      block.close()


def _requests_until_stopped(requests):
  """(slot, keys) requests until a None arrives or the training process is gone."""
  parent = multiprocessing.parent_process()
  while True:
    try:
      request = requests.get(timeout=_POLL_SECONDS)
    except queue.Empty:
      if parent is not None and not parent.is_alive():
        return
      continue
    if request is None:
      return
    yield request


@contextlib.contextmanager
def _sigint_ignored():
  """SIGINT ignored in this process while workers start, so they inherit "ignored" through exec.

  A spawned worker spends its first second or more importing (numpy, TFDS, protobuf) before `_worker_main`
  runs; a Ctrl-C then would raise KeyboardInterrupt mid-import and kill it. An ignored disposition survives
  exec, and Python's start-up keeps it. Only the main thread may change handlers, and only a handler
  Python knows can be put back: otherwise the workers ignore SIGINT from `_worker_main` on. A Ctrl-C during
  the few milliseconds of the start is lost."""
  if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
    yield
    return
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)


def _shutdown(processes, requests, blocks):
  for q in requests:
    try:
      q.put(None)
    except (OSError, ValueError):  # already closed
      pass
  for process in processes:
    process.join(timeout=5)
    if process.is_alive():
      process.terminate()
      process.join(timeout=5)
  for block in blocks:
    try:
      block.close()
    except BufferError:  # arrays still view it (collected loader): the mapping goes with the process
      pass
    try:
      block.unlink()
    except FileNotFoundError:
      pass


class OutputArrays:
  """The arrays batches are copied out into, reused once nothing else refers to them.

  A fresh array per batch costs page faults on first write, which makes copying a batch out of its slot
  slower than into an array written before (experiments/results/benchmark/README.md).
  An array is reused only when this list holds the one
  reference to it: anything still using a batch, a view of it (views refer to it) or an array JAX made
  from it without copying (JAX keeps a reference), keeps it out of reuse."""

  def __init__(self, batch_size: int, image_size: int, max_kept: int = 8):
    self._shapes = (batch_size, image_size, image_size, 3), (batch_size,)
    self._kept: List[Tuple[np.ndarray, np.ndarray]] = []
    self._max_kept = max_kept
    # What `_counts` reports for arrays held by nothing but this list, measured the same way `take`
    # measures (Python versions differ in which references sys.getrefcount includes).
    self._kept.append((np.empty(0, np.uint8), np.empty(0, np.int32)))
    self._free_count = self._counts()[0]
    self._kept.clear()

  def _counts(self) -> List[int]:
    counts = []
    for images, labels in self._kept:
      counts.append(max(sys.getrefcount(images), sys.getrefcount(labels)))
    return counts

  def take(self) -> Tuple[np.ndarray, np.ndarray]:
    for i, count in enumerate(self._counts()):
      if count <= self._free_count:
        images, labels = self._kept[i]
        return images, labels
    images, labels = np.empty(self._shapes[0], np.uint8), np.empty(self._shapes[1], np.int32)
    if len(self._kept) < self._max_kept:
      self._kept.append((images, labels))
    return images, labels  # a new tuple: holding it holds the arrays


def _death_message(worker: int, process) -> str:
  """Why a worker is gone and what to do: a signal (the kernel's out-of-memory killer sends SIGKILL) or an
  exception at start-up (printed above by the worker itself, e.g. a script without the
  `if __name__ == "__main__":` guard that spawned processes need)."""
  code = process.exitcode
  if code is not None and code < 0:
    cause = (
      f"was killed by signal {-code} (out of memory?). Lower --config.dataset.num_workers or the "
      f"batch size, then run again"
    )
  else:
    cause = (
      f"exited with code {code}: its error is printed above (a script that builds a loader needs "
      f'the `if __name__ == "__main__":` guard for worker processes). Fix it, then run again'
    )
  return f"Decoding worker {worker} (pid {process.pid}) {cause}: the run resumes from its last checkpoint."


class DecodePool:
  """`num_workers` spawned processes, each with `slots_per_worker` persistent shared-memory slots.

  open_source(*source_args) -> a random-access source of records (opened in each worker);
  decode_into(records, images_out, labels_out) fills the given arrays. `submit(k, keys)` then
  `collect(k)`, for k = 0, 1, 2, ... with at most `capacity` batches between them.
  """

  def __init__(
    self,
    open_source: Callable,
    source_args: tuple,
    decode_into: Callable,
    *,
    image_size: int,
    batch_size: int,
    num_workers: int,
    slots_per_worker: int = 2,
  ):
    if num_workers < 1:
      raise ValueError(f"DecodePool needs at least one worker, got {num_workers}.")
    self.num_workers, self.slots_per_worker = num_workers, slots_per_worker
    self.capacity = num_workers * slots_per_worker
    self._image_size, self._batch_size = image_size, batch_size
    context = multiprocessing.get_context("spawn")  # fork after JAX has started threads is unsafe
    size = slot_bytes(batch_size, image_size)
    self._blocks = [
      [shared_memory.SharedMemory(create=True, size=size) for _ in range(slots_per_worker)] for _ in range(num_workers)
    ]
    self._slots = [[_slot_arrays(block.buf, batch_size, image_size) for block in row] for row in self._blocks]
    self._outputs = OutputArrays(batch_size, image_size)
    self._requests = [context.Queue() for _ in range(num_workers)]
    self._responses = [context.Queue() for _ in range(num_workers)]
    self._processes = [
      context.Process(
        target=_worker_main,
        daemon=True,
        name=f"alexnet-decode-{w}",
        args=(
          open_source,
          source_args,
          decode_into,
          image_size,
          batch_size,
          [block.name for block in self._blocks[w]],
          self._requests[w],
          self._responses[w],
        ),
      )
      for w in range(num_workers)
    ]
    with _sigint_ignored():
      for process in self._processes:
        process.start()
    all_blocks = [block for row in self._blocks for block in row]
    self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._requests, all_blocks)

  def _place(self, k: int) -> Tuple[int, int]:
    return k % self.num_workers, (k // self.num_workers) % self.slots_per_worker

  def submit(self, k: int, keys: List[int]) -> None:
    worker, slot = self._place(k)
    self._requests[worker].put((slot, [int(key) for key in keys]))

  def collect(self, k: int):
    """Batch k as {'image': uint8 [n, S, S, 3], 'label': int32 [n]} (copies: the slot is free after)."""
    worker, slot = self._place(k)
    while True:
      try:
        got_slot, count, error = self._responses[worker].get(timeout=_POLL_SECONDS)
        break
      except queue.Empty:
        process = self._processes[worker]
        if not process.is_alive():
          raise RuntimeError(_death_message(worker, process)) from None
    if error is not None:
      is_dataset_error, message = error
      if is_dataset_error:
        raise DatasetError(message)
      raise RuntimeError(f"Decoding worker {worker} failed: {message}")
    assert got_slot == slot, (got_slot, slot)
    images, labels = self._slots[worker][slot]
    out_images, out_labels = self._outputs.take()
    np.copyto(out_images[:count], images[:count])
    np.copyto(out_labels[:count], labels[:count])
    if count == self._batch_size:
      return {"image": out_images, "label": out_labels}
    return {"image": out_images[:count], "label": out_labels[:count]}

  def pids(self) -> List[int]:
    return [process.pid for process in self._processes]

  def close(self) -> None:
    """Stops the workers and frees the shared memory; safe to call twice."""
    if self._finalizer.alive:
      self._slots = None  # release the buffer exports before the blocks close
      self._finalizer()
