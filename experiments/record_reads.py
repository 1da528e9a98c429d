"""What a record costs to read from an ArrayRecord file: a list read against range reads.

    python -m experiments.record_reads --data_dir=/tmp/alexnet_data --name=imagenette2_128

A batch drawn at random from a split stored in many files (ImageNet's train split: 1024) takes one or a
few records from each file. This times, per record, for groups of 1 to 128 random positions of one file:
`ArrayRecordReader.read(positions)` (a list read, which fans out to the reader's thread pool) and one
`read(p, p + 1)` per position (a range read in the calling thread, what `sources.SplitRecords` does), in
alternating rounds (best of each). Wall time and this process's CPU time are both printed: the thread
pool's CPU beyond the wall time is taken from other processes when every core is busy.
"""

import argparse
import sys
import time

import numpy as np

from alexnet_jax.data import sources


def arguments():
  """The command line's settings."""
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--name", default="imagenette2_128")
  parser.add_argument("--records", type=int, default=3000, help="records per timed round")
  parser.add_argument("--rounds", type=int, default=3)
  return parser.parse_args()


def main():
  args = arguments()
  try:
    source = sources.open_split(sources.dataset_info(args.data_dir, args.name), "train")
  except sources.DatasetError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  reader = source._reader(0)  # the first file of the split
  count = reader.num_records()
  rng = np.random.default_rng(0)
  print(f"{source._paths[0]}: {count} records")
  print(f"{'group':>5} {'list us/rec':>12} {'(cpu)':>7} {'range us/rec':>13} {'(cpu)':>7}")
  for size in (1, 2, 4, 8, 16, 32, 128):
    groups = [rng.choice(count, min(size, count), replace=False).tolist() for _ in range(max(1, args.records // size))]
    n = sum(len(g) for g in groups)

    def list_read():
      for group in groups:
        reader.read(group)

    def range_read():
      for group in groups:
        for position in group:
          reader.read(position, position + 1)

    best = {}
    for _ in range(args.rounds):
      for name, fn in (("list", list_read), ("range", range_read)):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best.get(name, (float("inf"),))[0]:
          best[name] = (wall, cpu)
    (lw, lc), (rw, rc) = best["list"], best["range"]
    print(f"{size:5d} {lw / n * 1e6:12.1f} {lc / n * 1e6:7.1f} {rw / n * 1e6:13.1f} {rc / n * 1e6:7.1f}", flush=True)


if __name__ == "__main__":
  main()
