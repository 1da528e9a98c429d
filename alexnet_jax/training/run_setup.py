"""`set_up(config, workdir)`: a training run as its config builds it, every check passed and nothing written.

Everything that can fail before training fails here, with one message that says what to change: values out
of range, misspelt choices, a batch that does not split across the devices, a dataset that is not prepared
(the embedded synthetic one is prepared on first use), crops that do not fit, a workdir that cannot be
written. The model and the preprocessors are built among the checks (a bad choice fails before any data is
prepared), the optimiser and the initial state after them; train.py trains them.
"""

import concurrent.futures
import dataclasses
import multiprocessing
import os
import tempfile

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections

from alexnet_jax import cli, paths
from alexnet_jax.data import pipeline, prepare, preprocess, sources
from alexnet_jax.model import build, models
from alexnet_jax.training import optim, steps


class TrainingError(RuntimeError):
  """A run that cannot go on: the message says why and what is left on disk."""


class WorkdirError(TrainingError):
  pass


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


def build_model(config: ml_collections.ConfigDict) -> models.AlexNet:
  """The configured AlexNet; a misspelt choice is a TrainingError naming the key, before anything runs."""
  try:
    return build.from_config(config.model)
  except models.ChoiceError as e:
    raise TrainingError(
      f"model.{e.field}={e.value!r} is not one of {list(e.allowed)}: set "
      f"--config.model.{e.field}={e.allowed[0]} (or another of them)."
    ) from None


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
      # The config's command where it makes the dataset asked for, else one that makes that name.
      raise sources.DatasetNotPrepared(
        f"No prepared dataset {d.name!r} in {data_dir!r}. Prepare it with: "
        f"{prepare.command_for(d.name, d.data_dir, d.prepare_args)}"
      ) from None
  logging.info(
    "Writing the embedded synthetic_shapes dataset to %s: generated here, nothing is downloaded "
    "(once; later runs read it).",
    data_dir,
  )
  try:
    prepare_synthetic_apart(data_dir, d.image_size)
  except ImportError as e:
    raise sources.DatasetError(
      f"synthetic_shapes is not prepared in {data_dir} and preparing it needs TensorFlow ({e}). Prepare it "
      f"on a machine with the [prepare] extra: {sources.prepare_command('synthetic_shapes', data_dir)}, "
      f"then copy {data_dir}/synthetic_shapes here."
    ) from None
  except concurrent.futures.process.BrokenProcessPool:
    raise sources.DatasetError(
      f"The process preparing synthetic_shapes in {data_dir} died before it finished (killed, or out of "
      f"memory); no incomplete copy is read (a leftover .synthetic_shapes-* folder there can be deleted). "
      f"Run again, or prepare it on its own: "
      f"{sources.prepare_command('synthetic_shapes', data_dir)}"
    ) from None
  return sources.dataset_info(data_dir, d.name)


def prepare_synthetic_apart(data_dir: str, image_size: int) -> None:
  """Prepares the embedded set in a spawned process, logging as this one does, and waits for it: its
  errors are raised here, and BrokenProcessPool where it died.

  TFDS's writer imports TensorFlow, whose native libraries would otherwise stay loaded beside JAX's for the
  whole run: the training process never imports TensorFlow."""
  context = multiprocessing.get_context("spawn")
  verbosity = logging.get_verbosity()
  with concurrent.futures.ProcessPoolExecutor(1, context, initializer=cli.log_as_parent, initargs=(verbosity,)) as pool:
    pool.submit(prepare.prepare_synthetic, data_dir, image_size=image_size, keep_existing=True).result()


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
  workdir = paths.absolute(workdir)
  if paths.file_in_the_way(workdir):
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


@dataclasses.dataclass
class Setup:
  """A run as built from its config, every check passed and nothing written yet."""

  config: ml_collections.ConfigDict
  workdir: str
  info: sources.DatasetInfo
  state: steps.TrainState  # initialised, not yet restored or replicated
  step_rng: jax.Array  # folded with the step (and device) inside the train step
  global_batch: int
  steps_per_epoch: int
  total_steps: int
  eval_every: int
  train_step: object  # (state, batch, rng) -> (state, metrics), in the form config.step_impl names
  eval_steps: dict  # view -> (state, batch) -> metric sums

  def is_boundary(self, step: int) -> dict:
    """Which of log / eval / checkpoint happen after `step` (the last step logs and evaluates)."""
    last = step == self.total_steps
    return {
      "log": step % self.config.log_every_steps == 0 or last,
      "eval": step % self.eval_every == 0 or last,
      "checkpoint": step % self.config.checkpoint_every_steps == 0,
    }

  @property
  def per_process_batch(self) -> int:
    return self.global_batch // jax.process_count()

  def batches_of(self, split: str):
    """The host evaluation batches of `split`, this process's share."""
    return pipeline.eval_batches(loader_config(self.config, split, batch_size=self.per_process_batch, shuffle=False))


def make_steps(config, train_preprocess, eval_preprocessors):
  """The train step and the eval steps in the form `config.step_impl` names (steps.STEP_IMPLS)."""
  if config.step_impl == "jit_sharded" and jax.process_count() > 1:
    raise TrainingError(
      "step_impl='jit_sharded' runs on one process's devices; with several processes use --config.step_impl=pmap."
    )
  try:
    return steps.trainer_steps(
      config.step_impl,
      train_preprocess=train_preprocess,
      eval_preprocessors=eval_preprocessors,
      label_smoothing=config.label_smoothing,
    )
  except ValueError as e:
    raise TrainingError(f"{e} Set --config.step_impl to one of them.") from None


def check_batch_splits(config) -> None:
  """The global batch splits evenly across every process's local devices."""
  devices = jax.local_device_count() * jax.process_count()
  if config.batch_size % devices:
    raise TrainingError(
      f"batch_size {config.batch_size} does not split evenly across {jax.local_device_count()} local devices "
      f"x {jax.process_count()} processes: use a multiple of {devices}."
    )


def check_dataset(config) -> tuple:
  """The dataset's info and its training split's size, once the dataset is there (prepared if asked) and
  fits the config: its class count, the crops, a batch in the training split, the evaluation splits."""
  info = ensure_dataset(config)
  if info.num_classes != config.model.num_classes:
    raise TrainingError(
      f"The dataset {info.name!r} has {info.num_classes} classes but model.num_classes is "
      f"{config.model.num_classes}: set --config.model.num_classes={info.num_classes}."
    )
  check_crop_fits(config, info)
  train_size = len(sources.open_split(info, config.dataset.train_split))  # sub-splits like 'train[:300]' too
  # The loader checks this too, but only once the workdir has been written.
  pipeline.check_split_holds_a_batch(info, config.dataset.train_split, train_size, config.batch_size)
  for split in (config.dataset.eval_split, config.dataset.train_eval_split):
    if split:  # a misspelt one fails now, not at the first evaluation
      sources.open_split(info, split)
  return info, train_size


def make_optimizer(config, steps_per_epoch: int):
  """optim.create_optimizer's transformation, guarded against non-finite updates as `on_nonfinite` says."""
  tx, _ = optim.create_optimizer(config, steps_per_epoch)
  try:
    return optim.guard_nonfinite(tx, config.on_nonfinite)
  except ValueError as e:
    raise TrainingError(f"{e} Set --config.on_nonfinite to one of them.") from None


def set_up(config: ml_collections.ConfigDict, workdir: str) -> Setup:
  """Checks the config, the devices and the dataset (preparing it if asked), and builds the model, the
  optimiser and the initial state: everything that can fail does so here, before anything is written into
  the workdir (it is only created, and checked for writing)."""
  check_values(config)  # first: a value no run can mean fails before the workdir exists
  optim.check_choices(config)
  workdir = check_workdir(workdir)
  check_batch_splits(config)
  model = build_model(config)  # a bad model choice fails before any data is prepared
  train_preprocess, eval_preprocessors = preprocess.make_preprocessors(config)  # and so do bad augmentation settings
  info, train_size = check_dataset(config)
  steps_per_epoch = max(1, train_size // config.batch_size)
  tx = make_optimizer(config, steps_per_epoch)
  size = config.augment.crop_size
  sample = jnp.zeros((1, size, size, 3), jnp.dtype(config.model.dtype))
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  state = steps.create_train_state(init_rng, model, sample, tx)
  train_step, eval_steps = make_steps(config, train_preprocess, eval_preprocessors)
  setup = Setup(
    config,
    workdir,
    info,
    state,
    step_rng,
    config.batch_size,
    steps_per_epoch,
    optim.total_steps(config, steps_per_epoch),
    max(1, int(round(config.eval_every_epochs * steps_per_epoch))),
    train_step,
    eval_steps,
  )
  logging.info(
    "Model %s: %s parameters; %d steps (%d per epoch), global batch %d on %d device(s).",
    config.model.preset,
    f"{models.param_count(state.params):,}",
    setup.total_steps,
    steps_per_epoch,
    config.batch_size,
    jax.device_count(),
  )
  return setup
