"""Running a command-line entry point: absl's `app.run`, answering a request for help with status 0 and
keeping the libraries' chatter out of the terminal.

absl prints the help and exits with status 1, as it does after a bad flag; users and scripts read 1 as
failure (`python -m alexnet_jax.main --help && ...` stops there).

A command prints its answer, its own log and every library's warnings. The libraries' INFO records
(orbax's checkpoint read speeds, JAX's backend probing, TFDS) and the notices TensorFlow's native code
prints to the terminal when it is imported (oneDNN, absl::InitializeLog) go to the log at DEBUG level:
`--verbosity=1` shows them. TensorFlow, which only TFDS uses here, is also kept off the GPUs, which belong
to JAX.
"""

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile

from absl import app
from absl import logging as absl_logging

from alexnet_jax import paths

HELP_FLAGS = frozenset(
  prefix + name for prefix in ("-", "--") for name in ("help", "h", "?", "helpshort", "helpfull", "helpxml")
)
# Log records from files under these folders are the commands' own; any other file's are a library's.
OWN_CODE = tuple(os.path.join(paths.REPOSITORY, name) + os.sep for name in ("alexnet_jax", "experiments", "configs"))
# A line native code logs (absl / glog): severity letter, month and day, e.g. 'I0000 00:00:17... port.cc:153]'.
NATIVE_RECORD = re.compile(r"^([IWEF])\d{4} ")
NATIVE_LOG_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


class QuietLibraries(logging.Filter):
  """Lets through warnings and the commands' own records; a library's INFO records only at --verbosity >= 1."""

  def filter(self, record: logging.LogRecord) -> bool:
    return (
      record.levelno >= logging.WARNING
      or record.pathname.startswith(OWN_CODE)
      or absl_logging.get_verbosity() >= absl_logging.DEBUG
    )


QUIET_LIBRARIES = QuietLibraries()


def log_native_output(text: str, source: str) -> None:
  """Logs what native code printed: its INFO records and absl's notice at DEBUG, anything else as a warning."""
  log, lines = absl_logging.warning, []
  for line in text.splitlines():
    record = NATIVE_RECORD.match(line)
    if record or line.startswith(NATIVE_LOG_NOTICE):
      if lines:
        log("%s: %s", source, "\n".join(lines))
      notice = line.startswith(NATIVE_LOG_NOTICE) or record.group(1) == "I"
      log, lines = (absl_logging.debug if notice else absl_logging.warning), [line]
    elif line.strip():
      lines.append(line)  # a record's further lines, or a line of its own
  if lines:
    log("%s: %s", source, "\n".join(lines))


@contextlib.contextmanager
def python_output_to(stream):
  """Inside the block, Python's own writes to stderr (sys.stderr, absl's log handler) go to `stream`."""
  handler = absl_logging.get_absl_handler().python_handler
  previous, handler_on_stderr = sys.stderr, handler.stream is sys.stderr
  sys.stderr = stream
  if handler_on_stderr:
    handler.setStream(stream)
  try:
    yield
  finally:
    sys.stderr = previous
    if handler_on_stderr:
      handler.setStream(previous)


@contextlib.contextmanager
def native_output_logged(source: str):
  """Inside the block, what native code writes to file descriptor 2 goes to the log (`log_native_output`);
  Python's own output still reaches the terminal."""
  sys.stderr.flush()
  terminal_fd = os.dup(2)
  with tempfile.TemporaryFile() as captured, open(terminal_fd, "w", closefd=True) as terminal:
    os.dup2(captured.fileno(), 2)
    try:
      with python_output_to(terminal):
        yield
    finally:
      terminal.flush()
      os.dup2(terminal_fd, 2)
      captured.seek(0)
      log_native_output(captured.read().decode(errors="replace"), source)


def hide_gpus_from(tensorflow) -> None:
  """Keeps TensorFlow off the GPUs: they belong to JAX."""
  try:
    tensorflow.config.set_visible_devices([], "GPU")
  except Exception:  # a CPU-only build, or devices already initialised
    pass


class QuietTensorFlowLoader(importlib.abc.Loader):
  """TensorFlow's own loader, run with its import notices logged (`native_output_logged`) and its GPUs hidden."""

  def __init__(self, loader):
    self.loader = loader

  def create_module(self, spec):
    return self.loader.create_module(spec)

  def exec_module(self, module):
    with native_output_logged("TensorFlow"):
      self.loader.exec_module(module)
      hide_gpus_from(module)

  def __getattr__(self, name):  # resource readers and the like: the real loader's
    return getattr(self.loader, name)


class QuietTensorFlowImport(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` as Python would, with QuietTensorFlowLoader around its loader."""

  def find_spec(self, name, path=None, target=None):
    if name != "tensorflow":
      return None
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    if spec is not None and spec.loader is not None and not isinstance(spec.loader, QuietTensorFlowLoader):
      spec.loader = QuietTensorFlowLoader(spec.loader)
    return spec


def quiet_libraries() -> None:
  """Sends the libraries' INFO records and TensorFlow's import notices to the log at DEBUG level (module
  docstring); TF_CPP_MIN_LOG_LEVEL, where the user has not set it, keeps TensorFlow's later INFO lines out."""
  absl_logging.get_absl_handler().addFilter(QUIET_LIBRARIES)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  if "tensorflow" not in sys.modules and not any(isinstance(f, QuietTensorFlowImport) for f in sys.meta_path):
    sys.meta_path.insert(0, QuietTensorFlowImport())


def log_as_parent(verbosity: int) -> None:
  """A spawned helper process's logging, as its parent's command has it: absl's format and verbosity, the
  libraries quiet (the child parses no flags)."""
  absl_logging.use_absl_handler()
  absl_logging.set_verbosity(verbosity)
  quiet_libraries()


def run(main, **kwargs) -> None:
  """Runs `main` as app.run(main, **kwargs) does, with the libraries quiet; exit status 0 after help.

  Args:
    main: the program, called with the command line's remaining arguments.
    **kwargs: passed to `absl.app.run` (e.g. `flags_parser`).
  """
  asked_for_help = any(arg.split("=", 1)[0] in HELP_FLAGS for arg in sys.argv[1:])
  quiet_libraries()
  try:
    app.run(main, **kwargs)
  except SystemExit as e:
    if asked_for_help and e.code == 1:
      sys.exit(0)
    raise
