"""`train_and_evaluate(config, workdir)`: the training loop, evaluation, metrics and checkpoints.

How a batch travels is drawn in the README's "Layout" section: host uint8 batches from the loader, split
across the local devices two steps ahead, augmented on the device inside the pmapped `steps.train_step`;
metrics stay on the device until a log step, so the host never waits in between.

Everything needed to resume lives in the workdir: `checkpoints/` (train state, data iterator state,
plateau state), `metrics.jsonl`, `tensorboard/`, `config.json`, `summary.json`. A run resumes from its latest
readable checkpoint automatically; SIGTERM / SIGINT make it save at the next step boundary and exit cleanly.
"""

import collections
import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import sys
import tempfile
import time
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from alexnet_jax import augment, checkpointing, metrics_io, models, optim, pooling, steps
from alexnet_jax.data import pipeline, sources


class TrainingError(RuntimeError):
  """A run that cannot go on: the message says why and what is left on disk."""


class WorkdirError(TrainingError):
  pass


# ------------------------------------------------------------------------------------------ construction


MODEL_CHOICES = {
  "preset": tuple(models.PRESETS),
  "init_scheme": ("paper", "he"),
  "activation": tuple(models.ACTIVATIONS),
  "tower_impl": models.TOWER_IMPLS,
  "pool_impl": pooling.POOL_IMPLS,
  "conv1_impl": ("auto",) + tuple(models.CONV1_IMPLS),
}


# Values no run can mean, refused before anything is written: (key, test, the range in words).
VALUE_RANGES = (
  ("optim.learning_rate", lambda v: v > 0, "> 0"),
  ("optim.momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
  ("optim.weight_decay", lambda v: v >= 0, ">= 0"),
  ("model.dropout_rate", lambda v: 0 <= v < 1, "in [0, 1)"),
  ("batch_size", lambda v: v >= 1, ">= 1"),
  ("augment.crop_size", lambda v: v > 0, "> 0"),
)


def check_values(config) -> None:
  """One line for the first value outside its range (VALUE_RANGES), or a run with no length."""
  for key, ok, allowed in VALUE_RANGES:
    section, _, name = key.rpartition(".")
    value = (config[section] if section else config)[name]
    if not ok(value):
      raise TrainingError(f"{key}={value!r} must be {allowed}: set --config.{key} to a value in that range.")
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    raise TrainingError(
      f"num_epochs={config.num_epochs!r} must be > 0 (or set num_train_steps > 0): the run would have no steps."
    )


def resolve_conv1_impl(choice: str, backend: str) -> str:
  """`auto`: conv1 as a space-to-depth convolution on GPUs, as one matrix multiply of its patches
  (im2col) elsewhere: the fastest measured on each (experiments/results/benchmark/README.md and
  experiments/results/study/NOTES.md). Same
  parameters and function either way (tests/test_models.py)."""
  if choice != "auto":
    return choice
  return "space_to_depth" if backend == "gpu" else "im2col"


def build_model(config: ml_collections.ConfigDict) -> models.AlexNet:
  """The configured AlexNet; a misspelt choice is a TrainingError naming the key, before anything runs."""
  m = config.model
  for key, allowed in MODEL_CHOICES.items():
    if m[key] not in allowed:
      raise TrainingError(
        f"model.{key}={m[key]!r} is not one of {list(allowed)}: set "
        f"--config.model.{key}={allowed[0]} (or another of them)."
      )
  return models.AlexNet(
    preset=m.preset,
    num_classes=m.num_classes,
    use_lrn=m.use_lrn,
    lrn_per_tower=m.lrn_per_tower,
    overlapping_pool=m.overlapping_pool,
    dropout_rate=m.dropout_rate,
    activation=m.activation,
    lrn_alpha=m.lrn_alpha,
    width_multiplier=m.width_multiplier,
    init_scheme=m.init_scheme,
    tower_impl=m.tower_impl,
    pool_impl=m.pool_impl,
    conv1_impl=resolve_conv1_impl(m.conv1_impl, jax.default_backend()),
    dtype=jnp.dtype(m.dtype),
    param_dtype=jnp.dtype(m.param_dtype),
  )


def _mean_pixels(config):
  a = config.augment
  if a.mean_image:
    path = os.path.expanduser(a.mean_image)
    if not os.path.exists(path):
      raise TrainingError(
        f"augment.mean_image {path!r} does not exist: compute it with `python -m "
        f"alexnet_jax.data.stats --data_dir={config.dataset.data_dir} "
        f"--name={config.dataset.name}`, then set --config.augment.mean_image="
        f"{config.dataset.data_dir}/{config.dataset.name}.train_stats.json.mean_image.npy."
      )
    return np.load(path)
  return np.asarray(a.mean_rgb, np.float32)


def view_names(spec: str) -> list:
  """'center, ten_crop' -> ['center', 'ten_crop']: the evaluation views a config string names."""
  return [v.strip() for v in spec.split(",") if v.strip()]


def make_preprocessors(config):
  """(train preprocess(batch, rng), {view name: eval preprocess(batch)}) from `config.augment`.

  Called before anything is written: a misspelt crop or view fails here, in one line, not in the final
  evaluation after hours of training."""
  a = config.augment
  if a.crop not in augment.TRAIN_CROPS:
    raise TrainingError(
      f"augment.crop={a.crop!r} is not one of {list(augment.TRAIN_CROPS)}: set "
      f"--config.augment.crop=random (the paper's), inception or center."
    )
  for key in ("eval_views", "final_eval_views"):
    names = view_names(a[key])
    unknown = [v for v in names if v not in augment.EVAL_VIEWS]
    if unknown or "center" not in names:  # the centre view's error drives the plateau rule and `best`
      problem = f"unknown view(s) {unknown}" if unknown else "it needs 'center'"
      raise TrainingError(
        f"augment.{key}={a[key]!r}: {problem}. Give a comma-separated list of "
        f"{list(augment.EVAL_VIEWS)} that includes center, e.g. "
        f"--config.augment.{key}=center,ten_crop."
      )
  mean = _mean_pixels(config)
  train = functools.partial(
    augment.train_preprocess,
    resize_to=a.resize_to or None,
    crop_size=a.crop_size,
    crop=a.crop,
    flip=a.flip,
    pca_std=a.pca_std,
    eigval=tuple(a.eigval),
    eigvec=tuple(map(tuple, a.eigvec)),
    mean=mean,
    std=tuple(a.std_rgb) or None,
    dtype=jnp.dtype(config.model.dtype),
  )
  views = set(view_names(a.eval_views)) | set(view_names(a.final_eval_views))
  return train, {v: eval_preprocessor(config, v, mean) for v in views}


def eval_preprocessor(config, view: str, mean=None):
  """preprocess(batch) of evaluation view `view` ('center' or 'ten_crop') under `config.augment`."""
  a = config.augment
  return functools.partial(
    augment.eval_preprocess,
    resize_to=a.resize_to or None,
    crop_size=a.crop_size,
    views=view,
    mean=_mean_pixels(config) if mean is None else mean,
    std=tuple(a.std_rgb) or None,
    dtype=jnp.dtype(config.model.dtype),
  )


def loader_config(config, split, *, batch_size, shuffle):
  d = config.dataset
  return pipeline.LoaderConfig(
    data_dir=os.path.expanduser(d.data_dir),
    name=d.name,
    split=split,
    batch_size=batch_size,
    image_size=d.image_size,
    seed=config.seed,
    num_workers=d.num_workers,
    shuffle=shuffle,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )


def ensure_dataset(config) -> sources.DatasetInfo:
  """The prepared dataset's info; the embedded synthetic set is prepared on first use when allowed.

  Every process that finds no copy prepares one: in a multi-process run on a shared file system they race
  to the same folder and the first complete copy wins (`prepare._store(keep_existing=True)`); on hosts
  with their own disks each writes its own. The copies are identical (synthetic.py), and no process waits
  for another, so none can read a copy before it is complete."""
  d = config.dataset
  data_dir = os.path.expanduser(d.data_dir)
  try:
    return sources.dataset_info(data_dir, d.name)
  except sources.DatasetNotPrepared:  # only a missing copy: a data_dir that is a file, say, is the user's
    if not (d.auto_prepare and d.name == "synthetic_shapes"):
      if not d.get("prepare_args"):
        raise
      raise sources.DatasetNotPrepared(
        f"No prepared dataset {d.name!r} in {data_dir!r}. Prepare it with: python -m alexnet_jax.data.prepare "
        f"{d.prepare_args} --data_dir={d.data_dir}"
      ) from None
  logging.info(
    "Writing the embedded synthetic_shapes dataset to %s: generated here, nothing is downloaded "
    "(once; later runs read it).",
    data_dir,
  )
  try:
    from alexnet_jax.data import prepare

    prepare.prepare_synthetic(data_dir, image_size=d.image_size, keep_existing=True)
  except ImportError as e:
    raise sources.DatasetError(
      f"synthetic_shapes is not prepared in {data_dir} and preparing it needs TensorFlow ({e}). Prepare it "
      f"on a machine with the [prepare] extra: {sources.prepare_command('synthetic_shapes', data_dir)}, "
      f"then copy {data_dir}/synthetic_shapes here."
    ) from None
  return sources.dataset_info(data_dir, d.name)


def check_crop_fits(config, info: sources.DatasetInfo) -> None:
  """The crops (section 4.1: 224 or 227 from 256) fit in the images the device gets: the loader's size
  (dataset.image_size, else the stored one), or augment.resize_to when the device resizes first."""
  host = pipeline.host_image_size(config.dataset.image_size, info)
  a = config.augment
  device = a.resize_to or host
  if a.crop_size > device:
    where = (
      f"augment.resize_to={a.resize_to}"
      if a.resize_to
      else f"{info.name!r} is read at {host}x{host}" + ("" if config.dataset.image_size else " (its stored size)")
    )
    raise TrainingError(
      f"augment.crop_size={a.crop_size} does not fit in the {device}x{device} images the device "
      f"gets ({where}): resize them on the device first with --config.augment.resize_to=256 "
      f"(as the imagenette variant does), or crop smaller."
    )


def check_workdir(workdir: str) -> str:
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir {workdir!r} is a file. Give a folder (it is created if missing).")
  try:
    os.makedirs(workdir, exist_ok=True)
    # A uniquely named probe: the processes of a multi-host run share the workdir, and containers often
    # give them the same pid.
    with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write_probe_"):
      pass
  except OSError as e:
    raise WorkdirError(
      f"Cannot write to --workdir {workdir!r} ({e.strerror}). Choose a folder you can write to."
    ) from None
  return workdir


def json_safe(value):
  """`value` with every non-finite float as None: standard JSON has no Infinity or NaN."""
  if isinstance(value, dict):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _write_json(path, value):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(json_safe(value), f, indent=2, default=str, allow_nan=False)
  os.replace(tmp, path)


def finished_summary(workdir: str, step: int, total_steps: int):
  """The summary of a run that already reached `total_steps` (None when it has not, or wrote none)."""
  path = os.path.join(workdir, "summary.json")
  if step < total_steps or not os.path.exists(path):
    return None
  with open(path) as f:
    summary = json.load(f)
  return summary if summary.get("step") == step else None


def save_config(config, workdir, resumed_step):
  """config.json of the first run is kept; a resume under a different config is recorded beside it."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort())
  if not os.path.exists(path):
    _write_json(path, current)
    return
  with open(path) as f:
    original = json.load(f)
  if original != current:
    other = os.path.join(workdir, f"config.resumed_at_{resumed_step}.json")
    logging.warning("Resuming with a config that differs from %s; recording it in %s.", path, other)
    _write_json(other, current)


# ------------------------------------------------------------------------------------------ the loop


class Preemption:
  """SIGTERM / SIGINT set a flag; the loop checkpoints at the next step boundary and exits cleanly."""

  def __init__(self):
    self.requested = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: no handlers
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.requested = signal.Signals(signum).name
    logging.warning("%s received: saving a checkpoint at the next step boundary, then exiting.", self.requested)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


# Steps dispatched but not yet computed, at most: enough to keep an accelerator fed while the host prepares
# the next step, few enough that progress counts finished work and a stop request waits for two steps only.
MAX_STEPS_IN_FLIGHT = 2


class InFlight:
  """Bounds how far the host runs ahead of the devices.

  JAX dispatches steps asynchronously: without a bound the loop queues as many steps as the loader can
  feed, the progress bar counts dispatched steps, and a stop request waits for the whole queue to compute
  before the state can be saved. `add` takes a step's outputs and waits for the oldest ones until at most
  `limit` are outstanding; it returns how many steps it saw finish."""

  def __init__(self, limit: int = MAX_STEPS_IN_FLIGHT):
    self.limit = limit
    self._queue = collections.deque()

  def add(self, outputs) -> int:
    self._queue.append(outputs)
    finished = 0
    while len(self._queue) > self.limit:
      self.wait(self._queue.popleft())
      finished += 1
    return finished

  def clear(self) -> None:
    """Forgets the queue once its outputs have been fetched (fetching waits for them)."""
    self._queue.clear()

  @staticmethod
  def wait(outputs) -> None:
    jax.block_until_ready(outputs)


def device_prefetch(iterator, mesh, size: int):
  """Host batches -> [devices, per_device, ...] arrays on the local devices, `size` batches ahead."""
  sharding = NamedSharding(mesh, PartitionSpec("batch"))
  num_devices = mesh.devices.size
  queue = []

  def put(batch):
    return jax.device_put(steps.shard_batch(batch, num_devices), sharding)

  for batch in iterator:
    queue.append(put(batch))
    if len(queue) > size:
      yield queue.pop(0)
  yield from queue


def evaluate(p_eval_steps, state, config, info, mesh, split: str, name: str = "eval") -> dict:
  """Errors on the whole of `split` for each view ('center', 'ten_crop'), recorded as `name`/... for the
  centre view and `name`_view/... for the others; padded batches are masked. The split is decoded once:
  every view's step runs on each batch."""
  per_process = config.batch_size // jax.process_count()
  totals = {view: None for view in p_eval_steps}
  batches = pipeline.eval_batches(loader_config(config, split, batch_size=per_process, shuffle=False))
  for batch in device_prefetch(batches, mesh, 1):
    for view, p_eval in p_eval_steps.items():
      sums = p_eval(state, batch)
      totals[view] = sums if totals[view] is None else jax.tree_util.tree_map(jnp.add, totals[view], sums)
  results = {}
  for view, view_totals in totals.items():
    view_totals = jax.tree_util.tree_map(local_value, view_totals)
    count = max(view_totals["count"], 1.0)
    prefix = name if view == "center" else f"{name}_{view}"
    results.update(
      {
        f"{prefix}/loss": view_totals["loss_sum"] / count,
        f"{prefix}/top1_error": 1.0 - view_totals["top1"] / count,
        f"{prefix}/top5_error": 1.0 - view_totals["top5"] / count,
        f"{prefix}/count": view_totals["count"],
      }
    )
  return results


def local_value(x) -> float:
  """The value of a per-device metric that is equal on every device, read from this process's first
  device (with several processes the array spans devices this process cannot address)."""
  return float(np.asarray(jax.device_get(x.addressable_data(0))).reshape(-1)[0])


def _summarise_train(metrics_list):
  """Host means over the steps since the last log, and the per-step values."""
  fetched = [{k: local_value(v) for k, v in m.items()} for m in metrics_list]
  count = sum(m["count"] for m in fetched)
  losses = [m["loss"] for m in fetched]
  values = {
    "train/loss": float(np.mean(losses)),
    "train/top1_error": 1.0 - sum(m["top1"] for m in fetched) / count,
    "train/top5_error": 1.0 - sum(m["top5"] for m in fetched) / count,
    "train/grad_norm": float(np.mean([m["grad_norm"] for m in fetched])),
  }
  if "learning_rate" in fetched[-1]:
    values["train/learning_rate"] = fetched[-1]["learning_rate"]
  return values, fetched


def nonfinite_problem(on_nonfinite: str, per_step: list, first_step: int, skipped_in_a_row: int) -> Optional[str]:
  """Why the run must stop for non-finite losses among the steps since `first_step` (their metrics in
  `per_step`), or None: 'stop' stops at the first, 'skip' once MAX_SKIPPED_IN_A_ROW updates in a row were
  dropped (the updates themselves were skipped by optim.guard_nonfinite)."""
  bad = [i for i, m in enumerate(per_step) if not math.isfinite(m["loss"])]
  if not bad:
    return None
  rate = per_step[bad[0]].get("learning_rate", float("nan"))
  if on_nonfinite == "stop":
    return f"Non-finite training loss at step {first_step + 1 + bad[0]} (learning rate {rate:.3g})"
  if skipped_in_a_row >= optim.MAX_SKIPPED_IN_A_ROW:
    return (
      f"{skipped_in_a_row} updates in a row had a non-finite loss and were skipped, up to step "
      f"{first_step + len(per_step)} (learning rate {rate:.3g}): the run has diverged"
    )
  logging.warning(
    "Skipped %d update(s) with a non-finite loss between steps %d and %d.",
    len(bad),
    first_step + 1,
    first_step + len(per_step),
  )
  return None


@dataclasses.dataclass
class LoopState:
  """Host-side bookkeeping saved with each checkpoint (JSON)."""

  plateau: dict
  best: dict
  train_time_s: float = 0.0
  images_seen: int = 0

  def to_dict(self):
    return dataclasses.asdict(self)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint) and returns the summary."""
  start_time = time.time()
  check_values(config)  # first: a value no run can mean fails before the workdir exists
  workdir = check_workdir(workdir)
  is_logger = jax.process_index() == 0
  num_devices = jax.local_device_count()
  global_batch = config.batch_size
  if global_batch % (num_devices * jax.process_count()):
    raise TrainingError(
      f"batch_size {global_batch} does not split evenly across {num_devices} local devices "
      f"x {jax.process_count()} processes: use a multiple of {num_devices * jax.process_count()}."
    )
  per_process_batch = global_batch // jax.process_count()

  model = build_model(config)  # first: a bad model choice fails before any data is prepared
  train_preprocess, eval_preprocessors = make_preprocessors(config)  # and so do bad augmentation settings
  info = ensure_dataset(config)
  if info.num_classes != config.model.num_classes:
    raise TrainingError(
      f"The dataset {info.name!r} has {info.num_classes} classes but model.num_classes is "
      f"{config.model.num_classes}: set --config.model.num_classes={info.num_classes}."
    )
  check_crop_fits(config, info)
  train_size = len(sources.open_split(info, config.dataset.train_split))  # sub-splits like 'train[:300]' too
  # The loader checks this too, but only once the workdir has been written.
  pipeline.check_split_holds_a_batch(info, config.dataset.train_split, train_size, global_batch)
  for split in (config.dataset.eval_split, config.dataset.train_eval_split):
    if split:  # a misspelt one fails now, not at the first evaluation
      sources.open_split(info, split)
  steps_per_epoch = max(1, train_size // global_batch)
  total_steps = optim.total_steps(config, steps_per_epoch)
  eval_every = max(1, int(round(config.eval_every_epochs * steps_per_epoch)))

  tx, schedule = optim.create_optimizer(config, steps_per_epoch)
  try:
    tx = optim.guard_nonfinite(tx, config.on_nonfinite)
  except ValueError as e:
    raise TrainingError(f"{e} Set --config.on_nonfinite to one of them.") from None
  size = config.augment.crop_size
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  state = steps.create_train_state(init_rng, model, jnp.zeros((1, size, size, 3), jnp.dtype(config.model.dtype)), tx)
  logging.info(
    "Model %s: %s parameters; %d steps (%d per epoch), global batch %d on %d device(s).",
    config.model.preset,
    f"{models.param_count(state.params):,}",
    total_steps,
    steps_per_epoch,
    global_batch,
    num_devices * jax.process_count(),
  )

  # However the run ends (finished, preempted, an error), the decoding workers stop, a checkpoint being written
  # is finished, and the metric files and progress bar are closed.
  with contextlib.ExitStack() as cleanup:
    manager = checkpointing.create_manager(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
    cleanup.callback(manager.close)  # waits for a checkpoint still being written
    restored = checkpointing.restore_latest(manager, state, workdir)
    o = config.optim
    min_factor = o.plateau_min_lr / optim.base_learning_rate(o, global_batch)
    loop = LoopState(plateau=optim.PlateauState().to_dict(), best={})
    data_state, start_step = None, 0
    if restored is not None:
      state, data_state, extra, start_step = restored
      loop = LoopState(**extra)
      logging.info("Resumed from the checkpoint at step %d in %s.", start_step, workdir)
      done = None if config.eval_only else finished_summary(workdir, start_step, total_steps)
      if done is not None:  # nothing to train: say so, write nothing (eval_only re-evaluates)
        return {**done, "already_finished": True}
    if is_logger and not config.eval_only:
      save_config(config, workdir, start_step)
      metrics_io.truncate_after(os.path.join(workdir, "metrics.jsonl"), start_step)
    writer = metrics_io.MetricWriter(workdir, enabled=is_logger and not config.eval_only)
    cleanup.callback(writer.close)

    state = steps.replicate(state)  # the sharding every step returns: the step compiles once
    p_train = steps.pmap_train_step(preprocess=train_preprocess, label_smoothing=config.label_smoothing)
    p_evals = {v: steps.pmap_eval_step(preprocess=p) for v, p in eval_preprocessors.items()}
    view_sets = {
      "periodic": view_names(config.augment.eval_views),
      "final": view_names(config.augment.final_eval_views),
    }
    mesh = Mesh(np.array(jax.local_devices()), ("batch",))

    def run_eval(step, kind="periodic"):
      results = evaluate({v: p_evals[v] for v in view_sets[kind]}, state, config, info, mesh, config.dataset.eval_split)
      if kind == "final" and config.dataset.train_eval_split:  # training images as evaluation sees them
        results.update(
          evaluate(
            {"center": p_evals["center"]}, state, config, info, mesh, config.dataset.train_eval_split, name="train_eval"
          )
        )
      writer.write("eval", step, results, epoch=round(step / steps_per_epoch, 3))
      return results

    if config.eval_only:
      if restored is None:
        raise TrainingError(f"eval_only needs a checkpoint, and {workdir}/checkpoints has none.")
      results = run_eval(start_step, "final")
      summary = {"eval_only": True, "step": start_step, "final": results}
      if is_logger:
        _write_json(os.path.join(workdir, "eval.json"), summary)
      return summary

    train_iter = pipeline.train_loader(
      loader_config(config, config.dataset.train_split, batch_size=per_process_batch, shuffle=True)
    )
    cleanup.callback(train_iter.close)  # the decoding workers
    if data_state is not None:
      train_iter.set_state(data_state)
    data_state_at = {}  # step -> the iterator state after the batches of steps < step were drawn

    def host_batches():
      step = start_step
      while True:
        data_state_at[step] = train_iter.get_state()
        yield next(train_iter)
        step += 1

    # The iterator state that matches a checkpoint at step s is the one before batch s was drawn; batches are
    # drawn ahead for the prefetch queue, so host_batches records it per step.
    batches = device_prefetch(host_batches(), mesh, config.prefetch_to_device)

    def checkpoint(step):
      checkpointing.save(manager, step, state, data_state_at[step], loop.to_dict())
      for s in [s for s in data_state_at if s < step]:
        del data_state_at[s]

    progress = None
    if is_logger and config.progress_bar:
      from tqdm import tqdm

      progress = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stderr)
      cleanup.callback(progress.close)

    pending, pending_since = [], start_step
    last_log_time = time.time()
    interval_start = last_log_time
    last_good_checkpoint = start_step if restored is not None else None
    preempted = None
    latest_eval = {}
    step = start_step
    in_flight = InFlight()
    with Preemption() as preemption:
      while step < total_steps:
        batch = next(batches)
        state, metrics = p_train(state, batch, step_rng)
        pending.append(metrics)
        finished = in_flight.add(metrics)
        step += 1
        if progress is not None:
          progress.update(finished)
        log_now = step % config.log_every_steps == 0 or step == total_steps
        checkpoint_now = step % config.checkpoint_every_steps == 0
        eval_now = step % eval_every == 0 or step == total_steps
        if log_now or checkpoint_now or eval_now or preemption.requested:
          values, per_step = _summarise_train(pending)  # fetching waits for every step dispatched
          in_flight.clear()
          if progress is not None:
            progress.update(step - progress.n)
          problem = nonfinite_problem(
            config.on_nonfinite, per_step, pending_since, optim.skipped_in_a_row(state.opt_state)
          )
          if problem:
            manager.wait_until_finished()
            where = (
              f"the last good checkpoint is step {last_good_checkpoint} in {manager.directory}, untouched"
              if last_good_checkpoint is not None
              else "no checkpoint was written"
            )
            raise TrainingError(
              f"{problem}; {where}. Lower optim.learning_rate"
              + (", or set on_nonfinite=skip to drop such updates." if config.on_nonfinite == "stop" else ".")
            )
          now = time.time()
          images = (step - pending_since) * global_batch
          loop.train_time_s += now - interval_start
          loop.images_seen += images
          writer.write("train", step, values, epoch=round(step / steps_per_epoch, 3))
          writer.write(
            "perf",
            step,
            {"perf/images_per_sec": images / max(now - interval_start, 1e-9), "perf/wall_time_s": now - start_time},
          )
          if progress is not None:
            progress.set_postfix(
              epoch=f"{step / steps_per_epoch:.2f}",
              loss=f"{values['train/loss']:.3f}",
              img_s=f"{images / max(now - interval_start, 1e-9):.0f}",
            )
          pending, pending_since = [], step
          if eval_now:
            results = run_eval(step, "final" if step == total_steps else "periodic")
            latest_eval = {**results, "step": step}
            top1 = results["eval/top1_error"]
            if not loop.best or top1 < loop.best["eval/top1_error"]:
              loop.best = {**results, "step": step}
            if o.schedule == "plateau":
              new = optim.plateau_update(
                optim.PlateauState.from_dict(loop.plateau),
                top1,
                patience=o.plateau_patience,
                cut=o.plateau_cut,
                cooldown=o.plateau_cooldown,
                min_factor=min_factor,
                threshold=o.plateau_threshold,
              )
              if new.factor != loop.plateau["factor"]:
                logging.info("Validation error plateaued: learning rate x%g (cut %d).", new.factor, new.cuts)
                state = steps.replicate(
                  state.replace(opt_state=optim.with_learning_rate_factor(state.opt_state, new.factor))
                )
              loop.plateau = new.to_dict()
          interval_start = time.time()
          if checkpoint_now or preemption.requested:
            checkpoint(step)
            last_good_checkpoint = step
          if preemption.requested:
            preempted = preemption.requested
            break

      if not preempted:
        if last_good_checkpoint != step:
          checkpoint(step)
    manager.wait_until_finished()
    if progress is not None:
      progress.close()
    train_iter.close()  # its workers stop before the final evaluation starts its own

    final = {}
    if not preempted:
      if latest_eval.get("step") == step:
        final = {k: v for k, v in latest_eval.items() if k != "step"}
      else:
        final = run_eval(step, "final")
    summary = {
      "step": step,
      "total_steps": total_steps,
      "epochs": step / steps_per_epoch,
      "preempted": preempted,
      "final": final,
      "best": loop.best,
      "train_time_s": loop.train_time_s,
      "wall_time_s": time.time() - start_time,
      "train_images_per_sec": loop.images_seen / max(loop.train_time_s, 1e-9),
      "devices": num_devices * jax.process_count(),
      "device_kind": jax.devices()[0].device_kind,
      "jax_version": jax.__version__,
      "parameters": models.param_count(state.params),
      "config": json.loads(config.to_json_best_effort()),
    }
    if o.schedule == "plateau":
      summary["plateau"] = loop.plateau
    if is_logger and not preempted:
      _write_json(os.path.join(workdir, "summary.json"), summary)
  return summary
