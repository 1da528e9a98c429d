"""The benchmark suite: train-step throughput, FLOP utilisation, PyTorch side by side, end to end, host input.

    python experiments/benchmark.py --out=experiments/results/benchmark/<machine>.json   # GPU: the full suite
    python experiments/benchmark.py --quick --out=...                                     # CPU-sized

(a) Train-step images/s on synthetic batches already on the device, per preset x dtype x batch size, for
    the plain `jax.jit` step (model + SGD, nothing else) and the project's full step (pmap over local
    devices, dropout, on-device augmentation from stored-size uint8 images, metrics), with achieved TFLOP/s
    (the model's convolution and matmul FLOPs counted from its jaxpr, alexnet_jax/flops.py) against the
    measured matmul rate of the machine.
(b) End-to-end images/s of `train_and_evaluate` on a prepared dataset (--e2e_data_dir/--e2e_name).
(c) The same training step in PyTorch when torch imports: torchvision's AlexNet and the paper's variant
    (LRN, two towers via groups=2), channels_last, autocast on CUDA, torch.compile where it works.
(d) Host input: raw one-core OpenCV decode rate of the prepared JPEGs, and the training loader with 1 and N
    workers (--pipeline_data_dir/--pipeline_name).
(e) Implementations (--variants): the project step of one configuration with each model implementation
    option (pool_impl, conv1_impl, tower_impl), so defaults follow measurements; and taken apart (under jit
    instead of pmap, without the augmentation, without metrics but the loss) to see what each part costs.
(f) XLA flags (--xla_flag_sets): the project step re-measured in a fresh process per flag set.
--sections picks and orders these. Every section is independent: one that fails records its error and the
run goes on; the JSON is rewritten after each section, so a run cut short keeps what it measured.
"""

import argparse
import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def timed(fn, steps, warmup, repeats=3, sync=None):
  """Seconds per call of fn() after `warmup` calls: the best of `repeats` rounds of `steps` calls (the
  round least disturbed by other work on the machine).

  fn() may return before the device is done, as a training loop's steps do: each round ends with sync()
  (wait for the device), so the round's time is the device's, with the host's dispatch overlapped as in
  training. Without `sync`, fn must block itself."""
  sync = sync or (lambda: None)
  for _ in range(warmup):
    fn()
  sync()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      fn()
    sync()
    best = min(best, (time.perf_counter() - start) / steps)
  return best


class CompileCounter(logging.Handler):
  """Counts JAX's "Compiling ..." log records (jax_log_compiles) while active."""

  def __init__(self):
    super().__init__()
    self.count = 0

  def emit(self, record):
    if record.getMessage().startswith("Compiling"):
      self.count += 1


@contextlib.contextmanager
def count_compiles():
  import jax

  counter = CompileCounter()
  root = logging.getLogger("jax")
  previous = jax.config.jax_log_compiles
  jax.config.update("jax_log_compiles", True)
  root.addHandler(counter)
  try:
    yield counter
  finally:
    root.removeHandler(counter)
    jax.config.update("jax_log_compiles", previous)


def parse_options(spec):
  """'pool_impl=masked,conv1_impl=space_to_depth' -> dict (values as strings; 'default' -> {}).
  conv1_impl=auto becomes what training picks on this backend (train.resolve_conv1_impl)."""
  if spec in ("", "default"):
    return {}
  options = dict(item.split("=", 1) for item in spec.split(",") if item)
  if options.get("conv1_impl") == "auto":
    import jax
    from alexnet_jax import train

    options["conv1_impl"] = train.resolve_conv1_impl("auto", jax.default_backend())
  return options


def matmul_tflops(dtype_name, n):
  import jax
  import jax.numpy as jnp

  dtype = jnp.dtype(dtype_name)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  f = jax.jit(lambda x, y: x @ y)
  last = {}

  def run():
    last["c"] = f(a, b)

  seconds = timed(run, 5, 2, sync=lambda: last["c"].block_until_ready())
  return 2 * n**3 / seconds / 1e12


# ---------------------------------------------------------------------------------------------- (a)


def jax_steps(
  preset,
  dtype_name,
  batch,
  width,
  steps,
  warmup,
  options=None,
  with_plain=True,
  step_kind="pmap",
  repeats=3,
  augment_on_device=True,
  metrics="all",
  baseline_options=None,
):
  """Images/s of the plain jit step and of the project's step for one configuration. The two are timed in
  alternating rounds (best round of each), so a slow patch of the machine hits both, not one.

  Steps are dispatched as the training loop dispatches them, without waiting for each (`timed`).
  `augment_on_device=False` feeds the project step already-cropped images of the model's dtype, as the
  plain step gets, and `metrics="loss"` keeps only the loss (XLA then drops top-1/top-5 and the gradient
  norm): the two take the project step apart, to see where it differs from the plain one.

  `baseline_options`: where they differ from `options`, a second plain step, of the model with these
  implementation options (e.g. {}: the model class's defaults, a plain direct conv1), is timed in the same
  rounds: the project's step against a plain step of the straightforward model."""
  import jax
  import jax.numpy as jnp
  import optax
  from alexnet_jax import augment, flops, models, optim
  from alexnet_jax import steps as steps_lib

  dtype = jnp.dtype(dtype_name)
  size = models.canonical_image_size(preset)
  options = dict(options or {})
  model = models.AlexNet(preset=preset, num_classes=1000, width_multiplier=width, dtype=dtype, **options)
  rng = np.random.default_rng(0)
  labels = jnp.asarray(rng.integers(0, 1000, batch), jnp.int32)

  # The plain reference: already-cropped float images, model + loss + SGD under jit, nothing else.
  params = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3), dtype), train=False)["params"]
  tx = optax.sgd(0.01, momentum=0.9)
  opt_state = tx.init(params)
  images = jnp.asarray(rng.normal(size=(batch, size, size, 3)), dtype)

  step_key = jax.random.key(1)  # one key for every step, as in training (the step folds in its number)

  def plain_runner(plain_model):
    """(run one step, wait for the device, XLA's FLOP count) of the plain step of `plain_model`."""

    def plain_step(params, opt_state, images, labels, key):
      def loss_fn(p):
        logits = plain_model.apply({"params": p}, images, train=True, rngs={"dropout": key})
        return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()

      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    own = jax.tree.map(jnp.copy, {"p": params, "o": opt_state})  # donated: each step owns its state
    plain = (
      jax.jit(plain_step, donate_argnums=(0, 1)).lower(own["p"], own["o"], images, labels, step_key).compile()
    )  # run this very executable
    cost = plain.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost

    def run():
      own["p"], own["o"], own["loss"] = plain(own["p"], own["o"], images, labels, step_key)

    def sync():
      own["loss"].block_until_ready()

    timed(run, 0, warmup, repeats=0, sync=sync)
    return run, sync, float(cost.get("flops", 0.0)) if cost else float("nan")

  # The model's FLOPs, counted from the jaxpr of the default layer implementations (the arithmetic the
  # model needs, whatever computes it: space-to-depth conv1 multiplies extra zeros), the same on every
  # backend. XLA's own count is kept beside it: on GPUs it leaves out the convolutions cuDNN runs.
  reference = models.AlexNet(preset=preset, num_classes=1000, width_multiplier=width, dtype=dtype)
  model_flops = float(flops.train_step_flops(reference, params, images, labels, jax.random.key(0)))
  xla_flops = float("nan")  # variants (with_plain=False) skip the plain step's compile
  plains = {}  # name -> (run, sync): the plain step of this model, and of the baseline implementations
  if with_plain:
    run_plain, sync_plain, xla_flops = plain_runner(model)
    plains["plain"] = (run_plain, sync_plain)
    if baseline_options is not None:
      baseline = models.AlexNet(
        preset=preset, num_classes=1000, width_multiplier=width, dtype=dtype, **baseline_options
      )
      fields = set(options) | set(baseline_options)
      if any(getattr(baseline, f) != getattr(model, f) for f in fields):  # e.g. not {} against direct
        plains["baseline"] = plain_runner(baseline)[:2]

  # The project's full step: pmap, uint8 256x256 host batches augmented on the device, metrics.
  devices = jax.local_device_count()
  per_batch = batch - batch % devices or devices
  state = steps_lib.replicate(
    steps_lib.create_train_state(
      jax.random.key(0), model, jnp.zeros((1, size, size, 3), dtype), optim.sgd(lambda c: 0.01)
    )
  )
  if augment_on_device:
    preprocess = functools.partial(augment.train_preprocess, resize_to=None, crop_size=size, dtype=dtype)
    stored = jnp.asarray(rng.integers(0, 256, (per_batch, 256, 256, 3)), jnp.uint8)
  else:
    preprocess, stored = None, images[:per_batch]
  host_batch = {"image": stored, "label": labels[:per_batch]}

  def loss_only_step(state, batch, rng, **kwargs):
    new_state, all_metrics = steps_lib.train_step(state, batch, rng, **kwargs)
    return new_state, {"loss": all_metrics["loss"]}

  if metrics not in ("all", "loss"):
    raise ValueError(f"metrics must be 'all' or 'loss', got {metrics!r}")
  step_fn = steps_lib.train_step if metrics == "all" else loss_only_step
  if step_kind == "pmap":
    p_train = steps_lib.pmap_train_step(step_fn, preprocess=preprocess)
    batch_in = jax.device_put(
      steps_lib.shard_batch(host_batch, devices),
      jax.sharding.NamedSharding(steps_lib.local_mesh(), jax.sharding.PartitionSpec("batch")),
    )
  else:  # one device, no pmap
    state = jax.device_put(state, jax.devices()[0])
    p_train = steps_lib.jit_train_step(step_fn, preprocess=preprocess)
    batch_in = jax.device_put(host_batch, jax.devices()[0])
  box = {"s": state}

  def run_full():
    box["s"], box["metrics"] = p_train(box["s"], batch_in, step_key)

  def sync_full():
    box["metrics"]["loss"].block_until_ready()

  timed(run_full, 0, max(1, warmup), repeats=0, sync=sync_full)
  best = {name: float("inf") for name in plains}
  full_s = float("inf")
  with count_compiles() as compiles:
    for _ in range(repeats):
      for name, (run, sync) in plains.items():
        best[name] = min(best[name], timed(run, steps, 0, repeats=1, sync=sync))
      full_s = min(full_s, timed(run_full, steps, 0, repeats=1, sync=sync_full))
  plain_s = best.get("plain", float("nan"))
  baseline_s = best.get("baseline", plain_s)
  return {
    "preset": preset,
    "dtype": dtype_name,
    "batch": batch,
    "width": width,
    "options": options,
    "step": step_kind,
    "augment_on_device": augment_on_device,
    "metrics": metrics,
    "plain_img_s": batch / plain_s,
    "full_img_s": per_batch / full_s,
    "full_over_plain": (per_batch / full_s) / (batch / plain_s),
    "compiles_after_warmup": compiles.count,
    "train_gflop_per_img": model_flops / batch / 1e9,
    "achieved_tflops": model_flops / plain_s / 1e12,
    "project_tflops": model_flops / batch * per_batch / full_s / 1e12,
    "xla_cost_analysis_gflop_per_img": xla_flops / batch / 1e9,
    "baseline_options": dict(options if baseline_options is None else baseline_options),
    "baseline_plain_img_s": batch / baseline_s,
    "full_over_baseline_plain": (per_batch / full_s) / (batch / baseline_s),
  }


# ---------------------------------------------------------------------------------------------- (c)


def torch_step(variant, batch, width, steps, warmup, compile_model):
  import torch
  import torch.nn as nn

  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.backends.cudnn.benchmark = True  # PyTorch's fastest convolution algorithms for these shapes
  w = lambda c: max(2, int(round(c * width / 2)) * 2)
  if variant == "owt":
    widths, groups, pad1, lrn, size = (64, 192, 384, 256, 256), (1, 1, 1, 1), 2, False, 224
  else:
    widths, groups, pad1, lrn, size = (96, 256, 384, 384, 256), (2, 1, 2, 2), 0, True, 227
  c = [w(x) for x in widths]
  norm = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0) if lrn else nn.Identity()  # alpha/n
  net = nn.Sequential(
    nn.Conv2d(3, c[0], 11, 4, pad1),
    nn.ReLU(inplace=True),
    norm(),
    nn.MaxPool2d(3, 2),
    nn.Conv2d(c[0], c[1], 5, padding=2, groups=groups[0]),
    nn.ReLU(inplace=True),
    norm(),
    nn.MaxPool2d(3, 2),
    nn.Conv2d(c[1], c[2], 3, padding=1, groups=groups[1]),
    nn.ReLU(inplace=True),
    nn.Conv2d(c[2], c[3], 3, padding=1, groups=groups[2]),
    nn.ReLU(inplace=True),
    nn.Conv2d(c[3], c[4], 3, padding=1, groups=groups[3]),
    nn.ReLU(inplace=True),
    nn.MaxPool2d(3, 2),
    nn.Flatten(),
    nn.Dropout(0.5),
    nn.Linear(c[4] * 36, w(4096)),
    nn.ReLU(inplace=True),
    nn.Dropout(0.5),
    nn.Linear(w(4096), w(4096)),
    nn.ReLU(inplace=True),
    nn.Linear(w(4096), 1000),
  ).to(device)
  net = net.to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
  model = torch.compile(net) if compile_model else net
  x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
  y = torch.randint(0, 1000, (batch,), device=device)

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
      loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

  # Queued without waiting, like the JAX steps: CUDA runs them in order, one sync ends each round.
  seconds = timed(step, steps, warmup, sync=torch.cuda.synchronize if device == "cuda" else None)
  return {
    "variant": variant,
    "batch": batch,
    "width": width,
    "compiled": compile_model,
    "device": device,
    "img_s": batch / seconds,
  }


# ------------------------------------------------------------------------------------------ (b), (d)


def decode_rate(encoded, seconds, decoder="opencv"):
  """Images/s of one thread decoding the JPEGs `encoded`, looped over for at least `seconds`.

  decoder "opencv": `cv2.imdecode`, the one-core limit issue #4's target is set against; "project":
  `sources.decode_image`, what the decoding workers use (simplejpeg where it is installed)."""
  import cv2
  from alexnet_jax.data import sources

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
  from alexnet_jax.data import decode_pool

  decode_pool.keep_freed_memory()  # as the decoding workers do: a fresh process otherwise decodes slower
  barrier.wait()
  results.put(decode_rate(encoded, seconds, decoder))


def parallel_decode_rate(encoded, processes, seconds, decoder="project"):
  """Images/s of `processes` processes doing nothing but decode (the workers' decoder by default),
  started together: what this machine's cores decode at once. Against one core times N it shows what the
  hardware gives away (shared cores of hyper-threads, lower all-core clocks, memory bandwidth) before any
  pipeline overhead."""
  import multiprocessing

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
  from alexnet_jax.data import sources

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


def pipeline_rates(data_dir, name, batch, seconds, workers_list, rounds=3):
  """Host pipeline images/s beside the one-core decode rates of the same JPEGs: OpenCV's (the limit of
  issue #4's target) and the project decoder's (`sources.decode_image`, the workers' own limit).

  For each worker count, decode rounds (half the round with each decoder) and loader rounds alternate
  (`rounds` of each, the best counts), so a slow patch of a shared machine hits both sides of the ratios;
  the loader's workers sit idle, their slots full, while the decode round runs. Also measured per worker
  count: N processes decoding at once (`parallel_decode_rate`, the machine's own N-core limit) and the CPU
  the training process and the workers spent per loader round, which says who is the bottleneck."""
  from alexnet_jax.data import pipeline, sources

  info = sources.dataset_info(data_dir, name)
  source = sources.open_split(info, "train")
  # A seeded random sample: the JPEGs the loader decodes come from the whole split, in random order.
  sample = np.random.default_rng(0).choice(len(source), min(len(source), 2000), replace=False)
  encoded = [sources.parse_example(record)["image"] for record in sources.read_records(source, sample)]
  round_seconds = seconds / rounds

  def loader_round(it, pids):
    start, images = time.perf_counter(), 0
    cpu_start, workers_start = time.process_time(), [_cpu_seconds(pid) for pid in pids]
    while time.perf_counter() - start < round_seconds:
      images += next(it)["label"].shape[0]
    wall = time.perf_counter() - start
    workers_cpu = sum(_cpu_seconds(pid) - before for pid, before in zip(pids, workers_start))
    return images / wall, (time.process_time() - cpu_start) / wall, workers_cpu / wall

  size = info.image_size or 256
  results = {
    "dataset": name,
    "rounds": rounds,
    "cpu_topology": cpu_topology(),
    "pipeline": [],
    "worker_stages_us_per_image": worker_stage_costs(source, size, batch),
  }
  print(
    "worker stages, us per image in one process: "
    + ", ".join(f"{k} {v:.1f}" for k, v in results["worker_stages_us_per_image"].items()),
    flush=True,
  )
  for workers in workers_list:
    it = iter(
      pipeline.train_loader(
        pipeline.LoaderConfig(data_dir=data_dir, name=name, split="train", batch_size=batch, num_workers=workers)
      )
    )
    try:
      for _ in range(3):
        next(it)
      pids = it.worker_pids()
      decode_rates, project_rates, loader_rates, main_cpu, workers_cpu = [], [], [], [], []
      for _ in range(rounds):
        decode_rates.append(decode_rate(encoded, round_seconds / 2, "opencv"))
        project_rates.append(decode_rate(encoded, round_seconds / 2, "project"))
        rate, main_share, workers_share = loader_round(it, pids)
        loader_rates.append(rate)
        main_cpu.append(main_share)
        workers_cpu.append(workers_share)
    finally:
      if hasattr(it, "close"):
        it.close()
    n = max(workers, 1)
    one_core, project_one_core, rate = max(decode_rates), max(project_rates), max(loader_rates)
    parallel = parallel_decode_rate(encoded, n, round_seconds) if n > 1 else project_one_core
    best = loader_rates.index(rate)
    results["pipeline"].append(
      {
        "workers": workers,
        "img_s": rate,
        "decode_one_core_img_s": one_core,
        "over_workers_x_decode": rate / (n * one_core),
        "decode_project_one_core_img_s": project_one_core,
        "over_workers_x_project_decode": rate / (n * project_one_core),
        "decode_n_processes_img_s": parallel,
        "over_n_process_decode": rate / parallel,
        "training_process_cpu_cores": main_cpu[best],
        "workers_cpu_cores": workers_cpu[best],
        "round_img_s": loader_rates,
        "round_decode_img_s": decode_rates,
        "round_project_decode_img_s": project_rates,
      }
    )
  return results


def end_to_end(config_spec, data_dir, name, steps):
  from alexnet_jax import configlib, train

  config = configlib.load_config(config_spec)  # as main and the sweeps load it
  config.dataset.update(data_dir=data_dir, name=name)
  config.update(
    num_train_steps=steps,
    log_every_steps=max(1, steps // 4),
    checkpoint_every_steps=10**9,
    eval_every_epochs=10**6,
    progress_bar=False,
  )
  config.augment.final_eval_views = "center"
  import tempfile

  with tempfile.TemporaryDirectory() as workdir:
    summary = train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      perf = [json.loads(line)["perf/images_per_sec"] for line in f if '"perf"' in line]
  from alexnet_jax.data import pipeline

  workers = config.dataset.num_workers
  # The first interval holds compilation: report the steady intervals.
  return {
    "config": config_spec,
    "dataset": name,
    "steps": steps,
    "img_s_steady": float(np.mean(perf[1:] or perf)),
    "img_s_all": summary["train_images_per_sec"],
    "preset": config.model.preset,
    "dtype": config.model.dtype,
    "batch": config.batch_size,
    "width": config.model.width_multiplier,
    "workers": pipeline.default_num_workers() if workers < 0 else workers,
  }


def end_to_end_against_limits(report):
  """Issue #7's end-to-end target in numbers, from rows of the same run: end to end over the project step
  of the same preset, dtype, batch and width (synthetic batches on the device), and over the decode limit of
  the workers it used (workers x the one-core decode rate of the pipeline section: OpenCV's, and the project
  decoder's, the faster one)."""
  e2e = report["end_to_end"]
  step = next(
    (
      r
      for r in report.get("jax", [])
      if (r["preset"], r["dtype"], r["batch"], r["width"]) == (e2e["preset"], e2e["dtype"], e2e["batch"], e2e["width"])
      and r.get("step") == "pmap"
    ),
    None,
  )
  if step is not None:
    e2e["step_img_s"] = step["full_img_s"]
    e2e["over_step"] = e2e["img_s_steady"] / step["full_img_s"]
  decode = [r for r in report.get("pipeline", {}).get("pipeline", []) if r["workers"] == e2e["workers"]]
  if decode:
    e2e["decode_limit_img_s"] = e2e["workers"] * decode[0]["decode_one_core_img_s"]
    e2e["over_decode_limit"] = e2e["img_s_steady"] / e2e["decode_limit_img_s"]
    e2e["project_decode_limit_img_s"] = e2e["workers"] * decode[0]["decode_project_one_core_img_s"]
    e2e["over_project_decode_limit"] = e2e["img_s_steady"] / e2e["project_decode_limit_img_s"]
  return e2e


SECTIONS = ("matmul", "steps", "torch", "variants", "pipeline", "e2e", "steps_extra", "flags")


def section_steps(args, report, presets, dtypes, batches):
  rows = report.setdefault("jax", [])
  for preset in presets:
    for dtype in dtypes:
      for batch in batches:
        r = jax_steps(
          preset,
          dtype,
          batch,
          args.width,
          args.steps,
          args.warmup,
          parse_options(args.model_options),
          with_plain=not args.project_only,
          repeats=args.repeats,
          baseline_options=parse_options(args.baseline_options),
        )
        r["of_matmul_peak"] = r["achieved_tflops"] / report.get("matmul_tflops", {}).get(dtype, float("nan"))
        r["project_of_matmul_peak"] = r["project_tflops"] / report.get("matmul_tflops", {}).get(dtype, float("nan"))
        rows.append(r)
        print(
          f"{preset:10} {dtype:9} {batch:5d} {r['plain_img_s']:12.0f} {r['full_img_s']:11.0f} "
          f"{r['full_over_plain']:10.2f} {r['train_gflop_per_img']:9.2f} {r['achieved_tflops']:8.1f} "
          f"{r['of_matmul_peak']:7.1%} {r['project_of_matmul_peak']:7.1%} {r['compiles_after_warmup']:4d} "
          f"{r['baseline_plain_img_s']:12.0f} {r['full_over_baseline_plain']:9.2f}",
          flush=True,
        )


STEP_HEADER = (
  f"{'preset':10} {'dtype':9} {'batch':>5} {'plain img/s':>12} {'full img/s':>11} {'full/plain':>10} "
  f"{'GFLOP/img':>9} {'TFLOP/s':>8} {'plain%pk':>7} {'full%pk':>7} {'comp':>4} {'baseline img/s':>12} "
  f"{'full/base':>9}\n(plain: jit step of the same model; baseline: jit step of the model with "
  f"--baseline_options; GFLOP/img: the model's, counted from its jaxpr)"
)


def section_torch(args, report):
  rows = report.setdefault("torch", [])
  modes = [False, True] if args.torch_compile else [False]
  for variant in [p for p in args.presets.split(",") if p in ("owt", "paper")]:
    for batch in map(
      int, args.batch_sizes.split(",")[:1] if args.torch_first_batch_only else args.batch_sizes.split(",")
    ):
      for compile_model in modes:
        try:
          r = torch_step(variant, batch, args.width, args.steps, args.warmup, compile_model)
        except Exception as e:  # torch.compile can fail where eager works: keep the eager figure
          r = {"variant": variant, "batch": batch, "compiled": compile_model, "error": repr(e)[:300]}
          print(f"torch {variant} batch {batch} compiled={compile_model}: {r['error']}", flush=True)
          rows.append(r)
          continue
        # PyTorch autocasts to bf16 on CUDA only: compare like with like.
        dtype = "bfloat16" if r["device"] == "cuda" else "float32"
        jax_best = max(
          (
            j["full_img_s"]
            for j in report.get("jax", []) + report.get("variants", [])
            if j["batch"] == batch
            and j["preset"] == variant
            and j["dtype"] == dtype
            and j.get("step", "pmap") == "pmap"
          ),
          default=float("nan"),
        )
        r["jax_full_over_torch"] = jax_best / r["img_s"]
        rows.append(r)
        print(
          f"torch {variant:6} batch {batch} {'compiled' if compile_model else 'eager   '}: "
          f"{r['img_s']:.0f} img/s; best project step ({dtype}) / torch = {r['jax_full_over_torch']:.2f}",
          flush=True,
        )


def section_variants(args, report):
  rows = report.setdefault("variants", [])
  batch = int(args.batch_sizes.split(",")[0])
  print(f"implementations, {args.variants_dtype}, batch {batch} (project step):", flush=True)
  for preset in [p for p in args.presets.split(",") if p]:
    for spec in args.variants.split(";"):
      options = {**parse_options(args.model_options), **parse_options(spec)}
      step_kind = options.pop("step", "pmap")
      augment_on_device = options.pop("augment", "on") != "off"
      metrics = options.pop("metrics", "all")
      if preset != "paper" and "tower_impl" in parse_options(spec):
        continue  # only the paper preset has towers
      r = jax_steps(
        preset,
        args.variants_dtype,
        batch,
        args.width,
        args.steps,
        args.warmup,
        options,
        with_plain=False,
        step_kind=step_kind,
        repeats=args.repeats,
        augment_on_device=augment_on_device,
        metrics=metrics,
      )
      r["variant"] = spec
      rows.append(r)
      print(
        f"  {preset:10} {spec:60} {r['full_img_s']:9.0f} img/s  compiles after warm-up: {r['compiles_after_warmup']}",
        flush=True,
      )


def section_flags(args, report):
  rows = report.setdefault("xla_flag_sweep", [])
  batch = args.batch_sizes.split(",")[0]
  for flag_set in [f for f in args.xla_flag_sets.split(";") if f.strip()]:
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flag_set).strip())
    out = os.path.join(os.path.dirname(os.path.abspath(args.out or ".")) or ".", ".flags_tmp.json")
    cmd = [
      sys.executable,
      os.path.abspath(__file__),
      "--sections=steps",
      "--project_only",
      "--dtypes=bfloat16",
      f"--presets={args.presets}",
      f"--batch_sizes={batch}",
      f"--steps={args.steps}",
      f"--warmup={args.warmup}",
      f"--repeats={args.repeats}",
      f"--model_options={args.model_options}",
      f"--width={args.width}",
      f"--out={out}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.flag_timeout_s)
    entry = {"xla_flags": flag_set, "returncode": proc.returncode, "seconds": time.perf_counter() - start}
    if proc.returncode == 0:
      with open(out) as f:
        entry["rows"] = [{k: r[k] for k in ("preset", "batch", "full_img_s")} for r in json.load(f)["jax"]]
      os.remove(out)
    else:
      entry["error"] = proc.stderr[-600:]
    rows.append(entry)
    shown = (
      ", ".join(f"{r['preset']} {r['full_img_s']:.0f}" for r in entry.get("rows", [])) or entry.get("error", "")[-200:]
    )
    print(f"XLA_FLAGS={flag_set!r}: {shown} img/s", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="CPU-sized: quarter width, small batches, few steps")
  parser.add_argument(
    "--sections",
    default="matmul,steps,torch,pipeline,e2e",
    help=f"comma-separated, run in this order; any of {', '.join(SECTIONS)}",
  )
  parser.add_argument("--presets", default="owt,one_tower,paper")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--batch_sizes", default="256,1024")
  parser.add_argument("--extra_dtypes", default="float32", help="steps_extra: these dtypes at the first batch size")
  parser.add_argument("--extra_batch_sizes", default="1024", help="steps_extra: these batch sizes in bfloat16")
  parser.add_argument(
    "--model_options",
    default="conv1_impl=auto",
    help="AlexNet options for plain and project steps, e.g. pool_impl=masked,conv1_impl=space_to_depth; "
    "the default is what training uses on this backend; also the base of every variant",
  )
  parser.add_argument(
    "--baseline_options",
    default="default",
    help="where they differ from --model_options, a second plain step with these options is timed "
    "beside the others ('default': the model class's defaults, e.g. a direct conv1)",
  )
  parser.add_argument("--project_only", action="store_true", help="skip the plain jit reference step")
  parser.add_argument(
    "--variants",
    default="default;pool_impl=masked;conv1_impl=direct;conv1_impl=space_to_depth;"
    "tower_impl=grouped;step=jit;augment=off;metrics=loss;augment=off,metrics=loss,step=jit",
    help="';'-separated option sets for the variants section, each over --model_options: model options, step=jit "
    "(instead of pmap), augment=off (pre-cropped input), metrics=loss (loss only)",
  )
  parser.add_argument("--variants_dtype", default="bfloat16")
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3, help="timed rounds per step (best counts)")
  parser.add_argument("--matmul_n", type=int, default=8192)
  parser.add_argument("--torch", default="auto", choices=["auto", "off"])
  parser.add_argument("--torch_compile", action="store_true", help="also time torch.compile (best mode counts)")
  parser.add_argument("--torch_first_batch_only", action="store_true")
  parser.add_argument("--pipeline_data_dir", default="")
  parser.add_argument("--pipeline_name", default="imagenette2_128")
  parser.add_argument(
    "--pipeline_seconds",
    type=float,
    default=10.0,
    help="per worker count: seconds of loader rounds, and as many of decode rounds",
  )
  parser.add_argument("--workers", default="1,0")  # 0 -> all cores but one
  parser.add_argument("--e2e_config", default="configs/alexnet.py:imagenette")
  parser.add_argument("--e2e_steps", type=int, default=0)
  parser.add_argument("--xla_flag_sets", default="", help="';'-separated XLA_FLAGS values for the flags section")
  parser.add_argument("--flag_timeout_s", type=float, default=240)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  if args.quick:
    args.width, args.batch_sizes, args.steps, args.warmup, args.matmul_n = 0.25, "32", 6, 2, 1024
    args.repeats = max(args.repeats, 5)
  sections = [x for x in args.sections.split(",") if x]
  unknown = set(sections) - set(SECTIONS)
  if unknown:
    parser.error(f"unknown sections {sorted(unknown)}: choose from {', '.join(SECTIONS)}")

  import jax

  report = {
    "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    "machine": {
      "platform": platform.platform(),
      "processor": platform.processor(),
      "cpus": os.cpu_count(),
      "devices": [str(d) for d in jax.devices()],
      "device_kind": jax.devices()[0].device_kind,
    },
    "versions": {"python": platform.python_version(), "jax": jax.__version__},
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    "errors": {},
  }
  for module in ("jaxlib", "flax", "optax", "tensorflow_datasets", "array_record", "torch", "cv2", "simplejpeg"):
    try:
      imported = __import__(module)
      # array_record has no __version__: its installed distribution says it.
      report["versions"][module] = getattr(imported, "__version__", None) or importlib.metadata.version(
        module.replace("_", "-")
      )
    except Exception:  # not installed here: left out of the report
      pass
  print(
    f"machine: {report['machine']['device_kind']} x{len(jax.devices())}, {os.cpu_count()} cpus, jax {jax.__version__}",
    flush=True,
  )

  def save():
    if args.out:
      os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
      with open(args.out, "w") as f:
        json.dump(report, f, indent=2)

  dtypes, batches = args.dtypes.split(","), list(map(int, args.batch_sizes.split(",")))
  presets = [p for p in args.presets.split(",") if p]
  for section in sections:
    start = time.perf_counter()
    try:
      if section == "matmul":
        report["matmul_tflops"] = {d: matmul_tflops(d, args.matmul_n) for d in ("float32", "bfloat16")}
        print("matmul TFLOP/s:", {k: round(v, 1) for k, v in report["matmul_tflops"].items()}, flush=True)
      elif section == "steps":
        print(STEP_HEADER, flush=True)
        section_steps(args, report, presets, dtypes, batches)
      elif section == "steps_extra":
        print(STEP_HEADER, flush=True)
        section_steps(args, report, presets, args.extra_dtypes.split(","), batches[:1])
        section_steps(args, report, presets, ["bfloat16"], [int(b) for b in args.extra_batch_sizes.split(",") if b])
      elif section == "torch" and args.torch == "auto":
        if importlib.util.find_spec("torch") is None:
          print("torch not importable: PyTorch comparison skipped", flush=True)
        else:
          section_torch(args, report)
      elif section == "variants":
        section_variants(args, report)
      elif section == "pipeline" and args.pipeline_data_dir:
        from alexnet_jax.data import pipeline

        workers = [int(w) or pipeline.default_num_workers() for w in args.workers.split(",")]
        report["pipeline"] = pipeline_rates(
          os.path.expanduser(args.pipeline_data_dir), args.pipeline_name, 128, args.pipeline_seconds, workers
        )
        p = report["pipeline"]
        print(f"cpu topology: {p['cpu_topology']}", flush=True)
        for r in p["pipeline"]:
          print(
            f"host pipeline, {r['workers']} worker(s): {r['img_s']:.0f} img/s; one-core OpenCV decode in "
            f"alternating rounds {r['decode_one_core_img_s']:.0f} img/s: "
            f"{r['over_workers_x_decode']:.2f} x workers x one-core decode; the project's decoder "
            f"{r['decode_project_one_core_img_s']:.0f} img/s: {r['over_workers_x_project_decode']:.2f} x "
            f"workers x it; {r['workers']} processes "
            f"decoding at once {r['decode_n_processes_img_s']:.0f} img/s: {r['over_n_process_decode']:.2f} "
            f"of it; CPU cores busy: training process {r['training_process_cpu_cores']:.2f}, workers "
            f"{r['workers_cpu_cores']:.2f}",
            flush=True,
          )
      elif section == "e2e" and args.e2e_steps and args.pipeline_data_dir:
        report["end_to_end"] = end_to_end(
          args.e2e_config, os.path.expanduser(args.pipeline_data_dir), args.pipeline_name, args.e2e_steps
        )
        e2e = end_to_end_against_limits(report)
        print(
          f"end to end ({args.e2e_config}): {e2e['img_s_steady']:.0f} img/s steady; over the project step "
          f"of this run: {e2e.get('over_step', float('nan')):.2f}; over {e2e['workers']} workers x one-core "
          f"decode: {e2e.get('over_decode_limit', float('nan')):.2f} (OpenCV), "
          f"{e2e.get('over_project_decode_limit', float('nan')):.2f} (the project's decoder)",
          flush=True,
        )
      elif section == "flags" and args.xla_flag_sets:
        section_flags(args, report)
    except Exception:
      report["errors"][section] = traceback.format_exc()[-3000:]
      print(f"section {section} failed:\n{report['errors'][section]}", flush=True)
    report.setdefault("section_seconds", {})[section] = time.perf_counter() - start
    print(f"[{section}: {time.perf_counter() - start:.0f} s]", flush=True)
    save()
  if args.out:
    print("wrote", args.out)


if __name__ == "__main__":
  main()
