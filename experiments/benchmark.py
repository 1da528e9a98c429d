"""The benchmark suite: train-step throughput, FLOP utilisation, PyTorch side by side, end to end, host input.

    python experiments/benchmark.py --out=experiments/results/benchmark/<machine>.json   # GPU: the full suite
    python experiments/benchmark.py --quick --out=...                                     # CPU-sized

(a) Train-step images/s on synthetic batches already on the device, per preset x dtype x batch size, for
    the plain `jax.jit` step (model + SGD, nothing else) and the project's full step (pmap over local
    devices, dropout, on-device augmentation from stored-size uint8 images, metrics), with achieved TFLOP/s
    (XLA's FLOP count of the plain step) against the measured matmul rate of the machine.
(b) End-to-end images/s of `train_and_evaluate` on a prepared dataset (--e2e_data_dir/--e2e_name).
(c) The same training step in PyTorch when torch imports: torchvision's AlexNet and the paper's variant
    (LRN, two towers via groups=2), channels_last, autocast on CUDA, torch.compile where it works.
(d) Host input: raw one-core OpenCV decode rate of the prepared JPEGs, and the grain pipeline with 1 and N
    workers (--pipeline_data_dir/--pipeline_name).
Prints a table and writes JSON (machine, versions, command, every figure).
"""

import argparse
import functools
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def timed(fn, steps, warmup, repeats=3):
  """Seconds per call of fn() after `warmup` calls: the best of `repeats` means over `steps` calls (the
  least disturbed by other work on the machine). fn must block until the device is done."""
  for _ in range(warmup):
    fn()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      fn()
    best = min(best, (time.perf_counter() - start) / steps)
  return best


def matmul_tflops(dtype_name, n):
  import jax
  import jax.numpy as jnp
  dtype = jnp.dtype(dtype_name)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  f = jax.jit(lambda x, y: x @ y)
  seconds = timed(lambda: f(a, b).block_until_ready(), 5, 2)
  return 2 * n ** 3 / seconds / 1e12


# ---------------------------------------------------------------------------------------------- (a)


def jax_steps(preset, dtype_name, batch, width, steps, warmup):
  import jax
  import jax.numpy as jnp
  import optax
  from alexnet_jax import augment, models, optim
  from alexnet_jax import steps as steps_lib
  dtype = jnp.dtype(dtype_name)
  size = models.canonical_image_size(preset)
  model = models.AlexNet(preset=preset, num_classes=1000, width_multiplier=width, dtype=dtype)
  rng = np.random.default_rng(0)
  labels = jnp.asarray(rng.integers(0, 1000, batch), jnp.int32)

  # The plain reference: already-cropped float images, model + loss + SGD under jit, nothing else.
  params = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3), dtype), train=False)["params"]
  tx = optax.sgd(0.01, momentum=0.9)
  opt_state = tx.init(params)
  images = jnp.asarray(rng.normal(size=(batch, size, size, 3)), dtype)

  def plain_step(params, opt_state, images, labels, key):
    def loss_fn(p):
      logits = model.apply({"params": p}, images, train=True, rngs={"dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  plain = jax.jit(plain_step, donate_argnums=(0, 1))
  compiled = plain.lower(params, opt_state, images, labels, jax.random.key(0)).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", 0.0)) if cost else 0.0
  carry = {"p": params, "o": opt_state}

  def run_plain():
    carry["p"], carry["o"], loss = plain(carry["p"], carry["o"], images, labels, jax.random.key(1))
    loss.block_until_ready()

  plain_s = timed(run_plain, steps, warmup)

  # The project's full step: pmap, uint8 256x256 host batches augmented on the device, metrics.
  devices = jax.local_device_count()
  per_batch = batch - batch % devices or devices
  state = steps_lib.replicate(steps_lib.create_train_state(
      jax.random.key(0), model, jnp.zeros((1, size, size, 3), dtype), optim.sgd(lambda c: 0.01)))
  preprocess = functools.partial(augment.train_preprocess, resize_to=None, crop_size=size, dtype=dtype)
  p_train = steps_lib.pmap_train_step(preprocess=preprocess)
  stored = jnp.asarray(rng.integers(0, 256, (per_batch, 256, 256, 3)), jnp.uint8)
  sharded = jax.device_put(steps_lib.shard_batch({"image": stored, "label": labels[:per_batch]}, devices),
                           jax.sharding.NamedSharding(steps_lib.local_mesh(), jax.sharding.PartitionSpec("batch")))
  box = {"s": state}

  def run_full():
    box["s"], metrics = p_train(box["s"], sharded, jax.random.key(1))
    metrics["loss"].block_until_ready()

  full_s = timed(run_full, steps, warmup)
  return {"preset": preset, "dtype": dtype_name, "batch": batch, "width": width,
          "plain_img_s": batch / plain_s, "full_img_s": per_batch / full_s,
          "full_over_plain": (per_batch / full_s) / (batch / plain_s),
          "train_gflop_per_img": flops / batch / 1e9, "achieved_tflops": flops / plain_s / 1e12}


# ---------------------------------------------------------------------------------------------- (c)


def torch_step(variant, batch, width, steps, warmup, compile_model):
  import torch
  import torch.nn as nn
  device = "cuda" if torch.cuda.is_available() else "cpu"
  w = lambda c: max(2, int(round(c * width / 2)) * 2)
  if variant == "owt":
    widths, groups, pad1, lrn, size = (64, 192, 384, 256, 256), (1, 1, 1, 1), 2, False, 224
  else:
    widths, groups, pad1, lrn, size = (96, 256, 384, 384, 256), (2, 1, 2, 2), 0, True, 227
  c = [w(x) for x in widths]
  norm = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0) if lrn else nn.Identity()  # alpha/n
  net = nn.Sequential(
      nn.Conv2d(3, c[0], 11, 4, pad1), nn.ReLU(inplace=True), norm(), nn.MaxPool2d(3, 2),
      nn.Conv2d(c[0], c[1], 5, padding=2, groups=groups[0]), nn.ReLU(inplace=True), norm(), nn.MaxPool2d(3, 2),
      nn.Conv2d(c[1], c[2], 3, padding=1, groups=groups[1]), nn.ReLU(inplace=True),
      nn.Conv2d(c[2], c[3], 3, padding=1, groups=groups[2]), nn.ReLU(inplace=True),
      nn.Conv2d(c[3], c[4], 3, padding=1, groups=groups[3]), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
      nn.Flatten(), nn.Dropout(0.5), nn.Linear(c[4] * 36, w(4096)), nn.ReLU(inplace=True), nn.Dropout(0.5),
      nn.Linear(w(4096), w(4096)), nn.ReLU(inplace=True), nn.Linear(w(4096), 1000)).to(device)
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
    if device == "cuda":
      torch.cuda.synchronize()

  seconds = timed(step, steps, warmup)
  return {"variant": variant, "batch": batch, "width": width, "compiled": compile_model, "device": device,
          "img_s": batch / seconds}


# ------------------------------------------------------------------------------------------ (b), (d)


def pipeline_rates(data_dir, name, batch, seconds, workers_list):
  from alexnet_jax.data import pipeline, sources
  info = sources.dataset_info(data_dir, name)
  source = sources.open_split(info, "train")
  encoded = [sources.parse_example(source[i])["image"] for i in range(min(len(source), 2000))]
  import cv2
  cv2.setNumThreads(1)
  decode_rate = 0.0
  for _ in range(3):  # best of three passes
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 3:
      for data in encoded:
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        count += 1
    decode_rate = max(decode_rate, count / (time.perf_counter() - start))
  results = {"dataset": name, "decode_one_core_img_s": decode_rate, "pipeline": []}
  for workers in workers_list:
    it = iter(pipeline.train_loader(pipeline.LoaderConfig(data_dir=data_dir, name=name, split="train",
                                                           batch_size=batch, num_workers=workers)))
    for _ in range(3):
      next(it)
    start, images = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
      images += next(it)["label"].shape[0]
    rate = images / (time.perf_counter() - start)
    if hasattr(it, "close"):
      it.close()
    results["pipeline"].append({"workers": workers, "img_s": rate,
                                "over_workers_x_decode": rate / (max(workers, 1) * decode_rate)})
  return results


def end_to_end(config_spec, data_dir, name, steps):
  import importlib.util
  from alexnet_jax import train
  path, _, arg = config_spec.partition(":")
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  config.dataset.update(data_dir=data_dir, name=name)
  config.update(num_train_steps=steps, log_every_steps=max(1, steps // 4), checkpoint_every_steps=10 ** 9,
                eval_every_epochs=10 ** 6, progress_bar=False)
  config.augment.final_eval_views = "center"
  import tempfile
  with tempfile.TemporaryDirectory() as workdir:
    summary = train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      perf = [json.loads(l)["perf/images_per_sec"] for l in f if '"perf"' in l]
  # The first interval holds compilation: report the steady intervals.
  return {"config": config_spec, "dataset": name, "steps": steps, "img_s_steady": float(np.mean(perf[1:] or perf)),
          "img_s_all": summary["train_images_per_sec"]}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="CPU-sized: quarter width, small batches, few steps")
  parser.add_argument("--presets", default="owt,one_tower,paper")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--batch_sizes", default="256,1024")
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--matmul_n", type=int, default=8192)
  parser.add_argument("--torch", default="auto", choices=["auto", "off"])
  parser.add_argument("--torch_compile", action="store_true")
  parser.add_argument("--pipeline_data_dir", default="")
  parser.add_argument("--pipeline_name", default="imagenette2_128")
  parser.add_argument("--pipeline_seconds", type=float, default=10.0)
  parser.add_argument("--workers", default="1,0")  # 0 -> all cores but one
  parser.add_argument("--e2e_config", default="configs/alexnet.py:imagenette")
  parser.add_argument("--e2e_steps", type=int, default=0)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  if args.quick:
    args.width, args.batch_sizes, args.steps, args.warmup, args.matmul_n = 0.25, "32", 5, 2, 1024

  import jax
  from alexnet_jax.data import pipeline
  report = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpus": os.cpu_count(), "devices": [str(d) for d in jax.devices()],
                        "device_kind": jax.devices()[0].device_kind},
            "versions": {"python": platform.python_version(), "jax": jax.__version__},
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}
  for module in ("flax", "optax", "grain", "torch", "cv2"):
    try:
      report["versions"][module] = __import__(module).__version__
    except Exception:
      pass
  print(f"machine: {report['machine']['device_kind']} x{len(jax.devices())}, jax {jax.__version__}")
  report["matmul_tflops"] = {d: matmul_tflops(d, args.matmul_n) for d in args.dtypes.split(",")}
  print("matmul TFLOP/s:", {k: round(v, 3) for k, v in report["matmul_tflops"].items()})

  report["jax"] = []
  print(f"{'preset':10} {'dtype':9} {'batch':>5} {'plain img/s':>12} {'full img/s':>11} {'full/plain':>10} "
        f"{'GFLOP/img':>9} {'TFLOP/s':>8} {'of peak':>7}")
  for preset in [p for p in args.presets.split(",") if p]:
    for dtype in args.dtypes.split(","):
      for batch in map(int, args.batch_sizes.split(",")):
        r = jax_steps(preset, dtype, batch, args.width, args.steps, args.warmup)
        r["of_matmul_peak"] = r["achieved_tflops"] / report["matmul_tflops"][dtype]
        report["jax"].append(r)
        print(f"{preset:10} {dtype:9} {batch:5d} {r['plain_img_s']:12.0f} {r['full_img_s']:11.0f} "
              f"{r['full_over_plain']:10.2f} {r['train_gflop_per_img']:9.2f} {r['achieved_tflops']:8.3f} "
              f"{r['of_matmul_peak']:7.1%}")

  report["torch"] = []
  if args.torch == "auto" and args.presets:
    try:
      import torch  # noqa: F401
      for variant in ("owt", "paper"):
        for batch in map(int, args.batch_sizes.split(",")):
          r = torch_step(variant, batch, args.width, args.steps, args.warmup, args.torch_compile)
          report["torch"].append(r)
          jax_best = max((j["full_img_s"] for j in report["jax"]
                          if j["batch"] == batch and j["preset"] == variant), default=float("nan"))
          r["jax_full_over_torch"] = jax_best / r["img_s"]
          print(f"torch {variant:6} batch {batch}: {r['img_s']:.0f} img/s; project step / torch = "
                f"{r['jax_full_over_torch']:.2f}")
    except ImportError:
      print("torch not importable: PyTorch comparison skipped")

  if args.pipeline_data_dir:
    workers = [int(w) or pipeline.default_num_workers() for w in args.workers.split(",")]
    report["pipeline"] = pipeline_rates(os.path.expanduser(args.pipeline_data_dir), args.pipeline_name, 128,
                                        args.pipeline_seconds, workers)
    p = report["pipeline"]
    print(f"host decode, one core (OpenCV): {p['decode_one_core_img_s']:.0f} img/s")
    for r in p["pipeline"]:
      print(f"grain pipeline, {r['workers']} worker(s): {r['img_s']:.0f} img/s "
            f"({r['over_workers_x_decode']:.2f} x workers x one-core decode)")
  if args.e2e_steps:
    report["end_to_end"] = end_to_end(args.e2e_config, os.path.expanduser(args.pipeline_data_dir),
                                      args.pipeline_name, args.e2e_steps)
    print(f"end to end ({args.e2e_config}): {report['end_to_end']['img_s_steady']:.0f} img/s")
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(report, f, indent=2)
    print("wrote", args.out)


if __name__ == "__main__":
  main()
