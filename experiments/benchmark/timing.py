"""Timing helpers shared by the benchmark's sections: best-of-rounds timing, a compile counter, and the
model-option strings of the command line."""

import contextlib
import logging
import time

import jax

from alexnet_jax.model import models


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
  """Counts the XLA compilations inside the block: `with count_compiles() as c: ...; c.count`."""
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
  `auto` becomes what training picks on this backend (models.resolve_impl)."""
  if spec in ("", "default"):
    return {}
  options = dict(item.split("=", 1) for item in spec.split(",") if item)
  for key in models.BACKEND_DEFAULTS:
    if key in options:
      options[key] = models.resolve_impl(key, options[key], jax.default_backend())
  return options
