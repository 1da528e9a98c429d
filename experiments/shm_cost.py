"""What it costs to hand a batch over in a fresh shared-memory block, per image.

    python -m experiments.shm_cost [--image_size=128] [--batch=128] [--rounds=50]

grain's worker processes put every batch into a new shared-memory block; the kernel then faults in and
zeroes each of its pages on first write. This times, per image of a uint8 batch: writing into a fresh
block (what a grain worker pays), the same with the pages populated by one madvise(MADV_POPULATE_WRITE)
call first (Linux >= 5.14), and writing into memory the process already holds (what a reused buffer costs).
"""

import argparse
import mmap
import time
from multiprocessing import shared_memory

import numpy as np

MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # the value in linux/mman.h


def per_image_us(write, rounds, batch):
  start = time.perf_counter()
  for _ in range(rounds):
    write()
  return (time.perf_counter() - start) / rounds / batch * 1e6


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=50)
  args = parser.parse_args()
  size = args.batch * args.image_size * args.image_size * 3
  source = np.random.default_rng(0).integers(0, 256, size, np.uint8)
  held = np.empty(size, np.uint8)

  def fresh_block(populate):
    def write():
      shm = shared_memory.SharedMemory(create=True, size=size)
      try:
        if populate:
          shm._mmap.madvise(MADV_POPULATE_WRITE)  # noqa: SLF001 - the mapping SharedMemory keeps
        view = np.ndarray((size,), np.uint8, buffer=shm.buf)
        view[:] = source
        del view
      finally:
        shm.close()
        shm.unlink()

    return write

  def held_buffer():
    held[:] = source

  for attempt in range(2):  # the second pass is the steady one
    fresh = per_image_us(fresh_block(False), args.rounds, args.batch)
    try:
      populated = f"{per_image_us(fresh_block(True), args.rounds, args.batch):.1f}"
    except OSError as e:  # kernels before 5.14
      populated = f"n/a ({e})"
    reused = per_image_us(held_buffer, args.rounds, args.batch)
    print(
      f"pass {attempt + 1}: {args.image_size}px uint8, per image: fresh shared memory {fresh:.1f} us, "
      f"populated first {populated} us, memory already held {reused:.1f} us"
    )


if __name__ == "__main__":
  main()
