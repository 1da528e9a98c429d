"""Sections (a) and (e): train-step images/s on synthetic batches already on the device.

The plain `jax.jit` step (model + loss + SGD, nothing else) against the project's full step (pmap over the
local devices, dropout, on-device augmentation from stored-size uint8 images, metrics), with the model's
FLOPs counted from its jaxpr (alexnet_jax/tools/flops.py) and the machine's matmul rate beside them."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alexnet_jax.data import augment
from alexnet_jax.model import models
from alexnet_jax.tools import flops
from alexnet_jax.training import optim
from alexnet_jax.training import steps as steps_lib
from experiments.benchmark.timing import count_compiles, timed


def matmul_tflops(dtype_name, n):
  """TFLOP/s of jitted n x n matrix products in `dtype_name` on the default device: the machine's peak."""
  dtype = jnp.dtype(dtype_name)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  f = jax.jit(lambda x, y: x @ y)
  last = {}

  def run():
    last["c"] = f(a, b)

  seconds = timed(run, 5, 2, sync=lambda: last["c"].block_until_ready())
  return 2 * n**3 / seconds / 1e12


def plain_runner(model, params, tx, images, labels, step_key, warmup):
  """(run one step, wait for the device, XLA's FLOP count) of the plain jit step of `model`: model + loss
  + `tx` on already-cropped images, the state donated so that each step owns it."""

  def plain_step(params, opt_state, images, labels, key):
    def loss_fn(p):
      logits = model.apply({"params": p}, images, train=True, rngs={"dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  own = jax.tree.map(jnp.copy, {"p": params, "o": tx.init(params)})
  compiled = jax.jit(plain_step, donate_argnums=(0, 1)).lower(own["p"], own["o"], images, labels, step_key).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost

  def run():
    own["p"], own["o"], own["loss"] = compiled(own["p"], own["o"], images, labels, step_key)

  def sync():
    own["loss"].block_until_ready()

  timed(run, 0, warmup, repeats=0, sync=sync)
  return run, sync, float(cost.get("flops", 0.0)) if cost else float("nan")


def project_runner(model, size, dtype, host_batch_of, step_key, warmup, step_kind, augment_on_device, metrics, tx=None):
  """(run one step, wait, images per step) of the project's step (steps.py) of `model`: pmapped over the
  local devices, jitted over a mesh of them (`jit_sharded`) or jitted on one (`jit`), fed uint8 256x256
  images augmented on the device or, with `augment_on_device=False`, already-cropped images;
  `metrics="loss"` keeps only the loss. `tx`: the optimiser (default: optim.sgd at a constant 0.01)."""
  if metrics not in ("all", "loss"):
    raise ValueError(f"metrics must be 'all' or 'loss', got {metrics!r}")
  devices = jax.local_device_count()
  state = steps_lib.replicate(
    steps_lib.create_train_state(
      jax.random.key(0), model, jnp.zeros((1, size, size, 3), dtype), tx or optim.sgd(lambda c: 0.01)
    )
  )
  preprocess = None
  if augment_on_device:
    preprocess = functools.partial(augment.train_preprocess, resize_to=None, crop_size=size, dtype=dtype)
  host_batch = host_batch_of(devices, augment_on_device)

  def loss_only_step(state, batch, rng, **kwargs):
    new_state, all_metrics = steps_lib.train_step(state, batch, rng, **kwargs)
    return new_state, {"loss": all_metrics["loss"]}

  step_fn = steps_lib.train_step if metrics == "all" else loss_only_step
  if step_kind in ("pmap", "jit_sharded"):  # the trainer's two forms (config step_impl), its batches
    if step_kind == "pmap":
      train = steps_lib.pmap_train_step(step_fn, preprocess=preprocess)
    else:
      train = steps_lib.sharded_train_step(step_fn, device_axis=True, preprocess=preprocess)
    batch_in = jax.device_put(
      steps_lib.shard_batch(host_batch, devices),
      jax.sharding.NamedSharding(steps_lib.local_mesh(), jax.sharding.PartitionSpec("batch")),
    )
  else:  # one device, no pmap
    state = jax.device_put(state, jax.devices()[0])
    train = steps_lib.jit_train_step(step_fn, preprocess=preprocess)
    batch_in = jax.device_put(host_batch, jax.devices()[0])
  box = {"s": state}

  def run():
    box["s"], box["metrics"] = train(box["s"], batch_in, step_key)

  def sync():
    box["metrics"]["loss"].block_until_ready()

  timed(run, 0, max(1, warmup), repeats=0, sync=sync)
  return run, sync, host_batch["label"].shape[0]


def reference_runners(build, options, baseline_options, params, tx, images, labels, step_key, warmup):
  """({name: (run, sync)}, XLA's FLOP count of the plain step): the plain jit step of the model with
  `options`, and where `baseline_options` build a different model (e.g. {} against space-to-depth conv1),
  the plain step of that one as "baseline"."""
  model = build(options)
  run_plain, sync_plain, xla_flops = plain_runner(model, params, tx, images, labels, step_key, warmup)
  runners = {"plain": (run_plain, sync_plain)}
  if baseline_options is not None:
    baseline = build(baseline_options)
    fields = set(options) | set(baseline_options)
    if any(getattr(baseline, f) != getattr(model, f) for f in fields):
      runners["baseline"] = plain_runner(baseline, params, tx, images, labels, step_key, warmup)[:2]
  return runners, xla_flops


def best_of_rounds(runners, steps, repeats):
  """({name: best seconds for `steps` steps}, compiles during the rounds): each runner timed once per round,
  in turn, so a slow patch of the machine hits all of them."""
  best = {name: float("inf") for name in runners}
  with count_compiles() as compiles:
    for _ in range(repeats):
      for name, (run, sync) in runners.items():
        best[name] = min(best[name], timed(run, steps, 0, repeats=1, sync=sync))
  return best, compiles.count


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
  `augment_on_device=False` and `metrics="loss"` take the project step apart (project_runner).
  `baseline_options`: where they differ from `options`, a second plain step, of the model with these
  implementation options (e.g. {}: models.REFERENCE_IMPLS, a plain direct conv1), is timed in the same
  rounds: the project's step against a plain step of the straightforward model."""
  dtype = jnp.dtype(dtype_name)
  size = models.canonical_image_size(preset)
  options = dict(options or {})
  build = lambda opts: models.AlexNet(
    preset=preset, num_classes=1000, width_multiplier=width, dtype=dtype, **{**models.REFERENCE_IMPLS, **opts}
  )
  model = build(options)
  rng = np.random.default_rng(0)
  labels = jnp.asarray(rng.integers(0, 1000, batch), jnp.int32)
  params = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3), dtype), train=False)["params"]
  images = jnp.asarray(rng.normal(size=(batch, size, size, 3)), dtype)
  step_key = jax.random.key(1)  # one key for every step, as in training (the step folds in its number)

  # The model's FLOPs, counted from the jaxpr of the default layer implementations (the arithmetic the
  # model needs, whatever computes it: space-to-depth conv1 multiplies extra zeros), the same on every
  # backend. XLA's own count is kept beside it: on GPUs it leaves out the convolutions cuDNN runs.
  model_flops = float(flops.train_step_flops(build({}), params, images, labels, jax.random.key(0)))
  runners, xla_flops = {}, float("nan")  # variants (with_plain=False) skip the plain steps' compile
  if with_plain:
    tx = optax.sgd(0.01, momentum=0.9)
    runners, xla_flops = reference_runners(
      build, options, baseline_options, params, tx, images, labels, step_key, warmup
    )

  def host_batch_of(devices, on_device):
    per_batch = batch - batch % devices or devices
    stored = jnp.asarray(rng.integers(0, 256, (per_batch, 256, 256, 3)), jnp.uint8) if on_device else images
    return {"image": stored[:per_batch], "label": labels[:per_batch]}

  run_full, sync_full, per_batch = project_runner(
    model, size, dtype, host_batch_of, step_key, warmup, step_kind, augment_on_device, metrics
  )
  runners["full"] = (run_full, sync_full)
  best, compiles = best_of_rounds(runners, steps, repeats)
  return {
    "preset": preset,
    "dtype": dtype_name,
    "batch": batch,
    "width": width,
    "options": options,
    "step": step_kind,
    "augment_on_device": augment_on_device,
    "metrics": metrics,
    "compiles_after_warmup": compiles,
    "baseline_options": dict(options if baseline_options is None else baseline_options),
    **rates(best, batch, per_batch, model_flops, xla_flops),
  }


def rates(best, batch, per_batch, model_flops, xla_flops):
  """Images/s, their ratios and TFLOP/s from the best seconds of each runner ("plain", "baseline", "full"):
  the plain steps run `batch` images a step, the project's `per_batch` (a multiple of the devices)."""
  plain_s, full_s = best.get("plain", float("nan")), best["full"]
  baseline_s = best.get("baseline", plain_s)
  return {
    "plain_img_s": batch / plain_s,
    "full_img_s": per_batch / full_s,
    "full_over_plain": (per_batch / full_s) / (batch / plain_s),
    "train_gflop_per_img": model_flops / batch / 1e9,
    "achieved_tflops": model_flops / plain_s / 1e12,
    "project_tflops": model_flops / batch * per_batch / full_s / 1e12,
    "xla_cost_analysis_gflop_per_img": xla_flops / batch / 1e9,
    "baseline_plain_img_s": batch / baseline_s,
    "full_over_baseline_plain": (per_batch / full_s) / (batch / baseline_s),
  }
