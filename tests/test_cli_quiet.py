"""The commands print their answer, their own log and warnings: the libraries' INFO records and
TensorFlow's import notices go to the log at DEBUG level, which --verbosity=1 shows."""

import logging
import os
import subprocess
import sys

import numpy as np
from absl import logging as absl_logging
from PIL import Image
import pytest

from alexnet_jax import cli, paths
from test_train import env, failure_text, main_command, tiny_flags

# What the libraries print at INFO level or on import, which a command's output must not show.
CHATTER = (
  "oneDNN custom operations",  # TensorFlow, on import
  "absl::InitializeLog",  # TensorFlow's absl, on import
  "gbytes_per_sec",  # orbax, reading a checkpoint
  "Restoring checkpoint",  # orbax
  "Unable to initialize backend",  # JAX, probing for TPUs
)


def quiet_env():
  """The tests' environment without TF_CPP_MIN_LOG_LEVEL (conftest sets it): the commands must be quiet alone."""
  e = env()
  e.pop("TF_CPP_MIN_LOG_LEVEL", None)
  return e


def assert_no_chatter(output: str):
  found = [c for c in CHATTER if c in output]
  assert not found, f"{found} in:\n{output[-3000:]}"


@pytest.mark.slow
def test_training_and_predict_print_no_library_chatter(tmp_path):
  """A first run prepares the synthetic set (TFDS imports TensorFlow in the preparing process) and trains
  2 steps; predict reads its checkpoint (orbax). Neither shows the chatter; --verbosity=1 brings orbax's
  records back."""
  workdir, data_dir = tmp_path / "work", tmp_path / "data"
  flags = tiny_flags(
    str(data_dir),
    **{"dataset.auto_prepare": True, "num_train_steps": 2, "checkpoint_every_steps": 2, "log_every_steps": 2},
  )
  trained = subprocess.run(main_command(workdir, flags), capture_output=True, text=True, timeout=900, env=quiet_env())
  assert trained.returncode == 0, failure_text(trained.stderr)
  assert "Writing the embedded synthetic_shapes dataset" in trained.stderr  # it was prepared on the way
  assert trained.stdout.startswith("Done: step 2")
  assert_no_chatter(trained.stdout + trained.stderr)

  Image.fromarray(np.full((80, 90, 3), 200, np.uint8)).save(tmp_path / "photo.png")
  command = [sys.executable, "-m", "alexnet_jax.tools.predict", f"--workdir={workdir}", str(tmp_path / "photo.png")]
  predicted = subprocess.run(command, capture_output=True, text=True, timeout=300, env=quiet_env())
  assert predicted.returncode == 0, predicted.stderr[-3000:]
  assert predicted.stdout.startswith(f"{tmp_path / 'photo.png'}: ") and predicted.stderr == ""
  assert_no_chatter(predicted.stdout)

  verbose = subprocess.run(command + ["--verbosity=1"], capture_output=True, text=True, timeout=300, env=quiet_env())
  assert verbose.returncode == 0 and "Restoring checkpoint" in verbose.stderr, verbose.stderr[-3000:]


def test_native_output_goes_to_the_log_at_its_level(caplog, capfd):
  """What native code writes to file descriptor 2 inside the block: INFO records and absl's notice are
  logged at DEBUG, a warning as a warning; nothing reaches the terminal, and Python's own output does."""
  notice = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
  native = notice + b"I0000 00:00:1.5 7 port.cc:153] oneDNN custom operations are on.\nmore of it\n"
  native += b"W0000 00:00:1.5 7 x.cc:1] careful\n"
  with caplog.at_level(logging.DEBUG, logger="absl"):
    with cli.native_output_logged("Native"):
      os.write(2, native)
      print("from Python", file=sys.stderr)
  records = [(r.levelno, r.getMessage()) for r in caplog.records]
  assert records == [
    (logging.DEBUG, "Native: " + notice.decode().strip()),
    (logging.DEBUG, "Native: I0000 00:00:1.5 7 port.cc:153] oneDNN custom operations are on.\nmore of it"),
    (logging.WARNING, "Native: W0000 00:00:1.5 7 x.cc:1] careful"),
  ]
  terminal = capfd.readouterr().err
  assert "oneDNN" not in terminal and "careful" not in terminal and "from Python" in terminal


def _record(path, level):
  return logging.LogRecord("absl", level, path, 1, "message", (), None)


def test_library_info_records_wait_for_verbosity_one():
  library = "/venv/lib/python3.11/site-packages/orbax/checkpoint/checkpointer.py"
  own = os.path.join(paths.REPOSITORY, "alexnet_jax", "training", "train.py")
  quiet, before = cli.QuietLibraries(), absl_logging.get_verbosity()
  try:
    absl_logging.set_verbosity(absl_logging.INFO)
    assert not quiet.filter(_record(library, logging.INFO))
    assert quiet.filter(_record(library, logging.WARNING)) and quiet.filter(_record(own, logging.INFO))
    absl_logging.set_verbosity(absl_logging.DEBUG)
    assert quiet.filter(_record(library, logging.INFO))
  finally:
    absl_logging.set_verbosity(before)
