"""Train or evaluate AlexNet: `python -m alexnet_jax.main --config=configs/alexnet.py[:ARGS] --workdir=DIR`.

ARGS is a variant (smoke, imagenette, imagewoof, study, study_imagewoof, imagenet, owt: the config file's
docstring says what each is) and/or key=value overrides (lrn=False,overlap=False,...); every knob is also a
flag, e.g. --config.model.use_lrn=False. A workdir that holds a checkpoint is resumed.
Multi-process runs (one process per host): --coordinator_address=HOST:PORT --num_processes=N
--process_id=I, or --distributed where JAX detects the cluster (SLURM, ...).
"""

import os
import sys

from absl import flags, logging
import jax
from ml_collections import config_flags

from alexnet_jax import cli, configlib, paths
from alexnet_jax.data import sources
from alexnet_jax.training import checkpointing, optim, run_setup, train

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


def initialize_distributed():
  """jax.distributed for multi-process runs; a silent peer fails the run after the heartbeat timeout."""
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


def shown_errors(summary: dict) -> dict:
  """The summary's final error rates, rounded for the terminal."""
  return {k: round(v, 4) for k, v in summary.get("final", {}).items() if k.endswith("error")}


def answer(summary: dict, workdir: str) -> str:
  """What the run did, in one line: evaluated, already finished, stopped by a signal, or done."""
  shown = shown_errors(summary)
  if summary.get("eval_only"):
    return (
      f"Evaluated the checkpoint at step {summary['step']}: {shown}. Written to {os.path.join(workdir, 'eval.json')}"
    )
  if summary.get("already_finished"):
    return (
      f"Already finished at step {summary['step']}: {shown}; nothing was run or written. Summary in "
      f"{os.path.join(workdir, 'summary.json')}; --config.eval_only=True evaluates "
      f"the checkpoint again, a larger --config.num_epochs trains on."
    )
  if summary.get("preempted"):
    return (
      f"Stopped by {summary['preempted']} at step {summary['step']}; the checkpoint is in {workdir}. "
      f"Run the same command to resume."
    )
  return (
    f"Done: step {summary['step']}, {shown}, {summary['train_images_per_sec']:.0f} images/s. "
    f"Summary in {os.path.join(workdir, 'summary.json')}"
  )


def main(argv):
  if len(argv) > 1:
    print(
      f"error: unexpected arguments {argv[1:]}: everything is a flag (--config=..., --workdir=..., "
      f"--config.KEY=VALUE); see python -m alexnet_jax.main --helpshort.",
      file=sys.stderr,
    )
    sys.exit(2)
  initialize_distributed()
  if FLAGS.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(FLAGS.compilation_cache_dir))
  logging.info("JAX %s, %d process(es), local devices: %s", jax.__version__, jax.process_count(), jax.local_devices())
  try:
    summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (sources.DatasetError, run_setup.TrainingError, checkpointing.CheckpointError, configlib.ConfigError) as e:
    print(f"error: {e}", file=sys.stderr)  # once: absl's log line would repeat it
    sys.exit(1)
  print(answer(summary, paths.absolute(FLAGS.workdir)))


def config_path(argv) -> str:
  """The file named by the command line's (last) --config, without its `:ARGS`; '' where there is none."""
  for i in reversed(range(len(argv))):
    flag, equals, value = argv[i].partition("=")
    if flag in ("--config", "-config"):
      value = value if equals else (argv[i + 1] if i + 1 < len(argv) else "")
      return value.partition(":")[0]
  return ""


def config_file_error(path: str):
  """One line on a --config file that cannot be loaded, else None. (ml_collections would keep the error
  for the config's first use, a traceback later, and call every --config.x override unknown meanwhile.)"""
  if os.path.isfile(path) and os.access(path, os.R_OK):
    return None
  where = "" if os.path.isabs(path) else f" ({os.path.abspath(path)})"
  problem = "is a folder" if os.path.isdir(path) else "cannot be read" if os.path.exists(path) else "does not exist"
  return (
    f"--config: {path!r}{where} {problem}. Name a config file, e.g. "
    f"--config={os.path.relpath(paths.CONFIG_FILE)}:smoke (python -m alexnet_jax.main --helpshort for the flags)."
  )


def flag_error(message: str) -> str:
  """absl's or ml_collections' message on a flag, in one line, with where to look."""
  if "Traceback" in message:  # an exception inside get_config: keep its last line
    message = "--config: " + message.strip().splitlines()[-1].split("Error: ", 1)[-1]
  message = message.replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
  return (
    f"{message.strip().rstrip('.')}. See `python -m alexnet_jax.main --helpshort` and the docstring of the config file."
  )


def parse_flags(argv):
  """absl's parsing, with a bad --config, override or choice reported in one line (status 2), not a traceback."""
  path = config_path(argv[1:])
  message = config_file_error(path) if path else None
  try:
    if message is None:
      remaining = FLAGS(argv)
      optim.check_choices(FLAGS.config)  # a misspelt choice fails before anything is written
      return remaining
  except configlib.ConfigError as e:
    message = str(e)
  except (flags.Error, OSError) as e:  # OSError: a config file that could not be loaded after all
    message = flag_error(str(e))
  except (AttributeError, KeyError, TypeError, ValueError, SyntaxError) as e:  # config_flags: unknown key, wrong type
    message = flag_error(f"{type(e).__name__}: {e}")
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


if __name__ == "__main__":
  cli.run(main, flags_parser=parse_flags)
