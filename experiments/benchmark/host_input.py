"""Section (d), host input: one-core decode rates of the prepared JPEGs (OpenCV's and the project
decoder's), N processes decoding at once, a decoding worker's stages, and the training loader with 1 and N
workers beside them."""

import multiprocessing
import os
import time

import numpy as np

from alexnet_jax.data import decode_pool, pipeline, sources


def decode_rate(encoded, seconds, decoder="opencv"):
  """Images/s of one thread decoding the JPEGs `encoded`, looped over for at least `seconds`.

  decoder "opencv": `cv2.imdecode`, the one-core limit the input pipeline's target is set against;
  "project": `sources.decode_image`, what the decoding workers use (simplejpeg where it is installed)."""
  import cv2  # noqa: PLC0415 (optional: OpenCV, for its decode rate)

  cv2.setNumThreads(1)
  if decoder == "opencv":
    decode = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  else:
    decode = sources.decode_image
  start, count = time.perf_counter(), 0
  while time.perf_counter() - start < seconds:
    for data in encoded:
      decode(data)
      count += 1
  return count / (time.perf_counter() - start)


def _decode_for(encoded, seconds, decoder, barrier, results):
  """One process of `parallel_decode_rate`: `decode_rate` after the barrier."""
  decode_pool.keep_freed_memory()  # as the decoding workers do: a fresh process otherwise decodes slower
  barrier.wait()
  results.put(decode_rate(encoded, seconds, decoder))


def parallel_decode_rate(encoded, processes, seconds, decoder="project"):
  """Images/s of `processes` processes doing nothing but decode (the workers' decoder by default),
  started together: what this machine's cores decode at once. Against one core times N it shows what the
  hardware gives away (shared cores of hyper-threads, lower all-core clocks, memory bandwidth) before any
  pipeline overhead."""
  context = multiprocessing.get_context("spawn")
  barrier, results = context.Barrier(processes), context.Queue()
  workers = [
    context.Process(target=_decode_for, args=(encoded, seconds, decoder, barrier, results), daemon=True)
    for _ in range(processes)
  ]
  for worker in workers:
    worker.start()
  try:
    return sum(results.get(timeout=seconds + 120) for _ in workers)
  finally:
    for worker in workers:
      worker.join(timeout=10)


def _cpu_seconds(pid):
  """User + system CPU seconds of a live process (Linux /proc), or nan elsewhere."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError):
    return float("nan")


def cpu_topology():
  """Logical CPUs, the ones this process may use, and physical cores (distinct (package, core) pairs in
  /proc/cpuinfo; None where it does not say): 16 logical CPUs may be 8 cores with two hyper-threads."""
  topology = {
    "logical": os.cpu_count(),
    "usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
  }
  try:
    cores, package = set(), None
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
          package = value.strip()
        elif key == "core id":
          cores.add((package, value.strip()))
    topology["physical_cores"] = len(cores) or None
  except OSError:
    topology["physical_cores"] = None
  return topology


def worker_stage_costs(source, image_size, batch, batches=16):
  """Microseconds per image of each stage of a decoding worker's job, in this process: reading a batch of
  random records (`sources.read_records`), then per record, as `pipeline.decode_into` does it: parse, then
  decode into the batch array (`sources.decode_fitted_into`: decode, fit to size where needed, write).
  Against the one-core decode rates they say where a worker's time beyond the decode goes."""
  rng = np.random.default_rng(1)
  out = np.empty((batch, image_size, image_size, 3), np.uint8)
  clock = time.perf_counter

  def one_batch(totals):
    keys = rng.choice(len(source), min(batch, len(source)), replace=False)
    start = clock()
    records = sources.read_records(source, keys)
    totals["read"] += clock() - start
    for i, record in enumerate(records):
      t0 = clock()
      example = sources.parse_example(record, file_name=False)
      t1 = clock()
      sources.decode_fitted_into(example["image"], out[i])
      t2 = clock()
      totals["parse"] += t1 - t0
      totals["decode_into_batch"] += t2 - t1
    return len(records)

  stages = ("read", "parse", "decode_into_batch")
  one_batch(dict.fromkeys(stages, 0.0))  # warm-up (opens the files' readers), not counted
  totals = dict.fromkeys(stages, 0.0)
  count = sum(one_batch(totals) for _ in range(batches))
  return {stage: seconds / count * 1e6 for stage, seconds in totals.items()}


def loader_round(it, pids, seconds):
  """(images/s, CPU cores the training process used, CPU cores the workers `pids` used) while `it`'s
  batches are taken for `seconds`."""
  start, images = time.perf_counter(), 0
  cpu_start, workers_start = time.process_time(), [_cpu_seconds(pid) for pid in pids]
  while time.perf_counter() - start < seconds:
    images += next(it)["label"].shape[0]
  wall = time.perf_counter() - start
  workers_cpu = sum(_cpu_seconds(pid) - before for pid, before in zip(pids, workers_start))
  return images / wall, (time.process_time() - cpu_start) / wall, workers_cpu / wall


def alternating_rounds(loader, encoded, rounds, round_seconds):
  """Per round: OpenCV's and the project's one-core decode rates of `encoded` (half a round each), then a
  loader round of `loader` (after 3 warm-up batches). Returns {name: [one value per round]}."""
  it = iter(pipeline.train_loader(loader))
  measured = {"opencv": [], "project": [], "loader": [], "main_cpu": [], "workers_cpu": []}
  try:
    for _ in range(3):
      next(it)
    pids = it.worker_pids()
    for _ in range(rounds):
      measured["opencv"].append(decode_rate(encoded, round_seconds / 2, "opencv"))
      measured["project"].append(decode_rate(encoded, round_seconds / 2, "project"))
      rate, main_share, workers_share = loader_round(it, pids, round_seconds)
      measured["loader"].append(rate)
      measured["main_cpu"].append(main_share)
      measured["workers_cpu"].append(workers_share)
  finally:
    if hasattr(it, "close"):
      it.close()
  return measured


def worker_count_row(workers, measured, encoded, round_seconds):
  """The pipeline's row for one worker count: its best loader round against the best one-core decode
  rates times the workers, and against N processes decoding at once."""
  n = max(workers, 1)
  one_core, project_one_core = max(measured["opencv"]), max(measured["project"])
  rate = max(measured["loader"])
  parallel = parallel_decode_rate(encoded, n, round_seconds) if n > 1 else project_one_core
  best = measured["loader"].index(rate)
  return {
    "workers": workers,
    "img_s": rate,
    "decode_one_core_img_s": one_core,
    "over_workers_x_decode": rate / (n * one_core),
    "decode_project_one_core_img_s": project_one_core,
    "over_workers_x_project_decode": rate / (n * project_one_core),
    "decode_n_processes_img_s": parallel,
    "over_n_process_decode": rate / parallel,
    "training_process_cpu_cores": measured["main_cpu"][best],
    "workers_cpu_cores": measured["workers_cpu"][best],
    "round_img_s": measured["loader"],
    "round_decode_img_s": measured["opencv"],
    "round_project_decode_img_s": measured["project"],
  }


def pipeline_rates(data_dir, name, batch, seconds, workers_list, rounds=3):
  """Host pipeline images/s beside the one-core decode rates of the same JPEGs: OpenCV's (the limit the
  input pipeline's target is set against) and the project decoder's (`sources.decode_image`, the workers' own limit).

  For each worker count, decode rounds (half the round with each decoder) and loader rounds alternate
  (`rounds` of each, the best counts), so a slow patch of a shared machine hits both sides of the ratios;
  the loader's workers sit idle, their slots full, while the decode round runs. Also measured per worker
  count: N processes decoding at once (`parallel_decode_rate`, the machine's own N-core limit) and the CPU
  the training process and the workers spent per loader round, which says who is the bottleneck."""
  info = sources.dataset_info(data_dir, name)
  source = sources.open_split(info, "train")
  # A seeded random sample: the JPEGs the loader decodes come from the whole split, in random order.
  sample = np.random.default_rng(0).choice(len(source), min(len(source), 2000), replace=False)
  encoded = [sources.parse_example(record)["image"] for record in sources.read_records(source, sample)]
  round_seconds = seconds / rounds
  stages = worker_stage_costs(source, info.image_size or 256, batch)
  print(
    "worker stages, us per image in one process: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()), flush=True
  )
  rows = []
  for workers in workers_list:
    loader = pipeline.LoaderConfig(data_dir=data_dir, name=name, split="train", batch_size=batch, num_workers=workers)
    measured = alternating_rounds(loader, encoded, rounds, round_seconds)
    rows.append(worker_count_row(workers, measured, encoded, round_seconds))
  return {
    "dataset": name,
    "rounds": rounds,
    "cpu_topology": cpu_topology(),
    "pipeline": rows,
    "worker_stages_us_per_image": stages,
  }
