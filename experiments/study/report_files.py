"""The study's files: finished runs copied into the report folder, and the README's findings block.

A run trains in the study's workdir (checkpoints and all); the report needs only a few of its files, which
are small enough to commit. copy_finished takes those, so the report can be rewritten from the committed
copies on any machine. The repository README carries the report's headline between two marker lines,
rewritten in place, so that the README never states findings the runs do not give.
"""

import dataclasses
import json
import os
import re
import shutil
from typing import List, Optional

import numpy as np
import orbax.checkpoint as ocp

from alexnet_jax import configlib
from alexnet_jax.analysis import sweep
from alexnet_jax.tools import inference
from alexnet_jax.training import loop
from experiments.study import measures

README_BEGIN = "<!-- study findings: written by `python -m experiments.study --readme=README.md`; do not edit -->"
README_END = "<!-- end of study findings -->"


def result_of(run: sweep.Run) -> Optional[dict]:
  """A run's summary.json, else its diverged.json (`run.summary_path`), as a dict; None before either.

  Raises:
    configlib.ConfigError: the file is not JSON (cut short).
  """
  if not run.done:
    return None
  try:
    with open(run.summary_path) as f:
      return json.load(f)
  except ValueError as e:
    raise configlib.ConfigError(
      f"Cannot read {run.summary_path} ({e}): move {run.workdir} aside and run again."
    ) from None


def copy_folder(run: sweep.Run, report_dir: str) -> str:
  """Where a run's copy lives in the report folder: report_dir/runs/<arm>/seed<k>."""
  return os.path.join(report_dir, "runs", run.name, f"seed{run.seed}")


def check_report_dir(runs: List[sweep.Run], report_dir: str, training: bool) -> None:
  """Refuses a report_dir holding runs that this workdir did not make, before anything is copied or run.

  A copy in report_dir/runs is another study's when the workdir's run of that arm and seed finished with
  another result, or (`training`) has not finished and would be trained anew: copying would overwrite it,
  or the report would mix two studies (the committed reports are report_dir by default).

  Raises:
    configlib.ConfigError: naming the first such run and what to do.
  """
  foreign = []
  for run in runs:
    kept = result_of(dataclasses.replace(run, workdir=copy_folder(run, report_dir)))
    if kept is None:
      continue
    made = result_of(run)
    if (made is not None and made != kept) or (made is None and training):
      foreign.append(run)
  if foreign:
    run = foreign[0]
    raise configlib.ConfigError(
      f"{report_dir} holds {len(foreign)} run(s) that this --workdir did not make (e.g. {run.name} seed "
      f"{run.seed}): this study would overwrite them or report them as its own. Give --report_dir a new "
      f"folder for this study's report, or --workdir the folder that made them; nothing was run or written."
    )


def copy_finished(runs: List[sweep.Run], report_dir: str) -> int:
  """Copies the files the report reads of each finished run to report_dir/runs/<arm>/seed<k>.

  Args:
    runs: the study's runs (arms.plan); those without a summary.json or diverged.json are left alone.
    report_dir: the report folder.

  Returns:
    How many runs were copied: summary.json (or diverged.json), metrics.jsonl, config.json, for a run
    that trained and kept a checkpoint its final conv1 kernels, and for one that was interrupted and
    resumed the steps it resumed from (measures.RESUMES_FILE).
  """
  copied = 0
  for run in runs:
    if not run.done:
      continue
    target = copy_folder(run, report_dir)
    os.makedirs(target, exist_ok=True)
    for name in (os.path.basename(run.summary_path), "metrics.jsonl", "config.json"):
      shutil.copyfile(os.path.join(run.workdir, name), os.path.join(target, name))
    note_resumes(os.path.join(run.workdir, "run.log"), os.path.join(target, measures.RESUMES_FILE))
    kernels = os.path.join(target, "conv1_kernels.npy")
    if not os.path.exists(kernels) and not run.diverged:  # a diverged net's kernels are not finite
      kernel = final_conv1_kernels(run.workdir)
      if kernel is None:
        print(f"note: {run.workdir} has no checkpoint; figure 3 leaves out {run.name} seed {run.seed}.")
      else:
        np.save(kernels, kernel)
    copied += 1
  return copied


def note_resumes(log_path: str, resumes_path: str) -> None:
  """Writes the steps the run resumed from, as its log names them, to resumes_path; where the log names
  none, no file is left. A run without a log (copied back from a committed report) keeps what it has."""
  if not os.path.exists(log_path):
    return
  steps = resumed_steps(log_path)
  if steps:
    with open(resumes_path, "w") as f:
      json.dump({"resumed_from_steps": steps}, f)
  elif os.path.exists(resumes_path):
    os.remove(resumes_path)


def resumed_steps(log_path: str) -> List[int]:
  """The checkpoint steps a run resumed from, as its run.log (the sweep's capture of its output) names
  them; [] where it never resumed or keeps no log. metrics.jsonl cannot tell: the trainer cuts it back to
  the checkpoint and carries the wall clock across a resume."""
  if not os.path.exists(log_path):
    return []
  pattern = re.compile(re.escape(loop.RESUMED_MESSAGE).replace("%d", r"(\d+)").replace("%s", ".*"))
  with open(log_path, errors="replace") as f:
    return [int(m.group(1)) for m in map(pattern.search, f) if m]


def final_conv1_kernels(workdir: str) -> Optional[np.ndarray]:
  """conv1's kernel [k, k, 3, n] from the newest checkpoint of a finished run (figure 3's analogue).

  Args:
    workdir: the run's folder.

  Returns:
    The kernel, or None where the run keeps no checkpoint (one copied from a committed report, or whose
    checkpoints were deleted).
  """
  try:
    step = inference.latest_step(workdir)
  except inference.InferenceError:
    return None
  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
  return np.asarray(state["params"]["conv1"]["kernel"], np.float32)


def block_bounds(path: str):
  """The file's text and where its findings block's text starts and ends.

  Args:
    path: a Markdown file with the README_BEGIN and README_END lines.

  Returns:
    (content, begin, end): the block's text is content[begin:end].

  Raises:
    configlib.ConfigError: the file cannot be read or has no block.
  """
  try:
    with open(path) as f:
      content = f.read()
  except OSError as e:
    raise configlib.ConfigError(f"--readme={path}: {e.strerror}.") from e
  begin, end = content.find(README_BEGIN), content.find(README_END)
  if begin < 0 or end < begin:
    raise configlib.ConfigError(
      f"--readme={path} has no findings block to rewrite: it needs the line {README_BEGIN!r} and, "
      f"after it, {README_END!r}."
    )
  return content, begin + len(README_BEGIN), end


def replace_block(path: str, text: str) -> None:
  """Puts `text` between README_BEGIN and README_END in the file at `path`."""
  content, begin, end = block_bounds(path)
  with open(path, "w") as f:
    f.write(content[:begin] + "\n" + text + "\n" + content[end:])


def check_compare_to(path: str) -> None:
  """ConfigError unless `path` is empty or a report folder of this study with finished runs of the baseline."""
  if path and not os.path.isdir(os.path.join(path, "runs", "baseline")):
    raise configlib.ConfigError(
      f"--compare_to={path} holds no study runs (no {os.path.join(path, 'runs', 'baseline')}): give the "
      f"--report_dir of the same study at another budget, e.g. experiments/results/study_15ep."
    )
