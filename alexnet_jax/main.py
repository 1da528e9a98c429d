"""Train or evaluate AlexNet: `python -m alexnet_jax.main --config=configs/alexnet.py[:ARGS] --workdir=DIR`.

ARGS is a variant (smoke, imagenette, imagenet, owt) and/or key=value overrides (lrn=False,overlap=False,...);
every knob is also a flag, e.g. --config.model.use_lrn=False. A workdir that holds a checkpoint is resumed.
Multi-process runs (one process per host): --coordinator_address=HOST:PORT --num_processes=N
--process_id=I, or --distributed where JAX detects the cluster (SLURM, ...).
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from alexnet_jax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A config file, e.g. configs/alexnet.py:smoke.", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl, TensorBoard events and summary.json go here.")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0, for multi-process training.")
flags.DEFINE_integer("num_processes", None, "Number of processes (hosts) in a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with JAX's cluster auto-detection.")
flags.DEFINE_integer(
  "heartbeat_timeout_s",
  60,
  "Multi-process: how long peers wait for a silent process before failing (instead of hanging).",
)
flags.DEFINE_string(
  "compilation_cache_dir",
  None,
  "Keep XLA's compiled programs in this folder (JAX's "
  "persistent compilation cache), so a restart or resume skips most compilation.",
)
flags.mark_flags_as_required(["config", "workdir"])


class QuietLibraries:
  """Drops INFO chatter from orbax and TFDS (every checkpoint logs ~30 lines); keeps warnings."""

  NOISY = ("/orbax/", "/tensorflow_datasets/")

  def filter(self, record):
    return record.levelno >= 30 or not any(n in record.pathname for n in self.NOISY)


def hide_gpus_from_tensorflow():
  """If something imported TensorFlow, keep it off the GPUs, which belong to JAX."""
  if "tensorflow" in sys.modules:
    try:
      sys.modules["tensorflow"].config.set_visible_devices([], "GPU")
    except Exception:  # already initialised, or a CPU-only build
      pass


def initialize_distributed():
  """jax.distributed for multi-process runs; a silent peer fails the run after the heartbeat timeout."""
  import jax

  if FLAGS.coordinator_address or (FLAGS.num_processes or 1) > 1 or FLAGS.distributed:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes need real collectives
  if FLAGS.coordinator_address or (FLAGS.num_processes or 1) > 1:
    jax.distributed.initialize(
      coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes,
      process_id=FLAGS.process_id,
      heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_s,
    )
  elif FLAGS.distributed:
    jax.distributed.initialize(heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_s)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(QuietLibraries())
  hide_gpus_from_tensorflow()
  initialize_distributed()
  import jax

  if FLAGS.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(FLAGS.compilation_cache_dir))
  from alexnet_jax import configlib
  from alexnet_jax.training import checkpointing, train
  from alexnet_jax.data import sources

  logging.info("JAX %s, %d process(es), local devices: %s", jax.__version__, jax.process_count(), jax.local_devices())
  try:
    summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (sources.DatasetError, train.TrainingError, checkpointing.CheckpointError, configlib.ConfigError) as e:
    print(f"error: {e}", file=sys.stderr)  # once: absl's log line would repeat it
    sys.exit(1)
  if summary.get("eval_only"):
    shown = {k: round(v, 4) for k, v in summary["final"].items() if k.endswith("error")}
    print(
      f"Evaluated the checkpoint at step {summary['step']}: {shown}. Written to "
      f"{os.path.join(os.path.abspath(FLAGS.workdir), 'eval.json')}"
    )
  elif summary.get("already_finished"):
    shown = {k: round(v, 4) for k, v in summary.get("final", {}).items() if k.endswith("error")}
    print(
      f"Already finished at step {summary['step']}: {shown}; nothing was run or written. Summary in "
      f"{os.path.join(os.path.abspath(FLAGS.workdir), 'summary.json')}; --config.eval_only=True evaluates "
      f"the checkpoint again, a larger --config.num_epochs trains on."
    )
  elif summary.get("preempted"):
    print(
      f"Stopped by {summary['preempted']} at step {summary['step']}; the checkpoint is in "
      f"{os.path.abspath(FLAGS.workdir)}. Run the same command to resume."
    )
  else:
    final = summary.get("final", {})
    shown = {k: round(v, 4) for k, v in final.items() if k.endswith("error")}
    print(
      f"Done: step {summary['step']}, {shown}, {summary['train_images_per_sec']:.0f} images/s. "
      f"Summary in {os.path.join(os.path.abspath(FLAGS.workdir), 'summary.json')}"
    )


def parse_flags(argv):
  """absl's parsing, with a bad --config or override reported in one line instead of a traceback."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    message = str(e)
  except (AttributeError, KeyError, TypeError, ValueError) as e:  # config_flags: unknown key, wrong type
    message = f"{type(e).__name__}: {e}"
  if "Traceback" in message:  # an exception inside get_config: keep its last line
    message = "--config: " + message.strip().splitlines()[-1].split("Error: ", 1)[-1]
  message = message.replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
  print(
    f"error: {message}\nSee `python -m alexnet_jax.main --helpshort` and the docstring of the config file.",
    file=sys.stderr,
  )
  sys.exit(2)


if __name__ == "__main__":
  cli.run(main, flags_parser=parse_flags)
