"""Where metrics go: the console (absl logging), `metrics.jsonl`, TensorBoard (tensorboardX).

Each JSONL record has `kind` ('train', 'eval', 'perf'), `step` and the values. Train and eval records are
deterministic for a seed, so a resumed run reproduces them exactly; timing lives in 'perf' records. On
resume the file is cut back to the checkpoint's step, so it reads as one uninterrupted run.
"""

import json
import math
import os

from absl import logging
from tensorboardX import SummaryWriter

# The summary of a run that non-finite losses stopped (run_files.write_divergence): beside summary.json, whose
# absence marks an unfinished run, so that a sweep counts the divergence as a result and does not retry it.
DIVERGED_FILE = "diverged.json"


def truncate_after(path: str, step: int) -> None:
  """Drops records past `step` (written after the checkpoint a run resumes from); keeps the rest as is.

  Lines that do not parse (cut short by a kill) are dropped too; the file is replaced atomically.

  Args:
    path: a metrics.jsonl; nothing happens where it does not exist.
    step: the last step to keep.
  """
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      if json.loads(line)["step"] <= step:
        kept.append(line)
    except (ValueError, KeyError):
      continue  # a line cut short by a kill
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(kept)
  os.replace(tmp, path)


def _clean(value):
  value = float(value)
  return value if math.isfinite(value) else str(value)


class MetricWriter:
  """Writes records on the process that logs (process 0); a no-op elsewhere.

  Args:
    workdir: the run's directory: `metrics.jsonl` and `tensorboard/` go there.
    enabled: False makes every write a no-op (the other processes, evaluation-only runs).
    tensorboard: also write TensorBoard scalars.
  """

  def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if enabled and tensorboard:
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, kind: str, step: int, values: dict, **extra) -> None:
    """Appends one record to metrics.jsonl, adds its values to TensorBoard and logs them.

    Args:
      kind: 'train', 'eval' or 'perf'.
      step: the train step.
      values: metric name -> number; non-finite ones are stored as the strings 'nan', 'inf', '-inf'.
      **extra: further fields of the JSON record only (e.g. epoch).
    """
    if not self.enabled:
      return
    record = {"kind": kind, "step": int(step), **extra, **{k: _clean(v) for k, v in values.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for key, value in values.items():
        self._tb.add_scalar(key, float(value), int(step))
    logging.info("[%s] step %d: %s", kind, step, ", ".join(f"{k}={float(v):.5g}" for k, v in values.items()))

  def flush(self) -> None:
    """Flushes the TensorBoard file (metrics.jsonl is closed after every record)."""
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    """Flushes and closes the TensorBoard file; safe to call twice."""
    if self._tb is not None:
      self._tb.close()
      self._tb = None
