"""The training loop's parts, one job each, as `train.train_and_evaluate` uses them.

Progress      what a checkpoint carries besides the train state: best result, plateau state, throughput
TrainLogger   the steps' metrics until a log step: train and perf records, the progress bar, throughput
Evaluator     evaluations: the views of periodic and final ones, the best result, the plateau rule
Checkpointer  checkpoints: the data-iterator state that matches each step, the last good one, restore
Preemption    SIGTERM / SIGINT as a request to checkpoint at the next step boundary and stop

Each part holds its own state, so the loop in train.py reads as the order of events (step, log, evaluate,
checkpoint) and every rule (when to wait for the device, what a checkpoint must record) lives in one place.
Nothing here compiles a step: the steps come from training.steps.
"""

import collections
import dataclasses
import math
import os
import signal
import sys
import time
from typing import Callable, Dict, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from tqdm import tqdm

from alexnet_jax.training import checkpointing, optim, steps


RESUMED_MESSAGE = "Resumed from the checkpoint at step %d in %s."  # logged at each resume (run.log keeps it)


@dataclasses.dataclass
class Progress:
  """Host-side bookkeeping saved with each checkpoint (JSON).

  Attributes:
    plateau: the plateau rule's state (`optim.PlateauState.to_dict()`).
    best: the results of the evaluation with the lowest eval/top1_error, with its 'step'; empty before one.
    train_time_s: seconds spent training, evaluations excluded.
    images_seen: training images consumed (global batch x steps).
    wall_time_s: the run's wall time up to this checkpoint.
  """

  plateau: dict = dataclasses.field(default_factory=lambda: optim.PlateauState().to_dict())
  best: dict = dataclasses.field(default_factory=dict)
  train_time_s: float = 0.0
  images_seen: int = 0
  wall_time_s: float = 0.0  # of the whole run up to this checkpoint, over every segment a resume made

  def to_dict(self):
    """The fields as a JSON-ready dict (`Progress(**d)` restores it)."""
    return dataclasses.asdict(self)


def local_value(x) -> float:
  """The value of a per-device metric that is equal on every device, read from this process's first
  device (with several processes the array spans devices this process cannot address).

  Args:
    x: a jax.Array, a scalar or [devices], with the same value on every device.

  Returns:
    That value as a Python float.
  """
  return float(np.asarray(jax.device_get(x.addressable_data(0))).reshape(-1)[0])


def device_prefetch(iterator, mesh, size: int):
  """Host batches -> [devices, per_device, ...] arrays on the local devices, `size` batches ahead.

  Args:
    iterator: host batches, dicts of numpy arrays [B, ...], B divisible by the mesh's size.
    mesh: a mesh whose axis is named 'batch' (`steps.local_mesh()`).
    size: how many batches to hold on the devices ahead of the one yielded.

  Yields:
    Each batch as `steps.shard_batch` shapes it, sharded along its device axis.

  Raises:
    ValueError: B does not divide by the mesh's size.
  """
  sharding = NamedSharding(mesh, PartitionSpec("batch"))
  num_devices = mesh.devices.size
  queue = []
  for batch in iterator:
    queue.append(jax.device_put(steps.shard_batch(batch, num_devices), sharding))
    if len(queue) > size:
      yield queue.pop(0)
  yield from queue


# ------------------------------------------------------------------------------------------ logging

# Steps dispatched but not yet computed, at most: enough to keep an accelerator fed while the host prepares
# the next step, few enough that progress counts finished work and a stop request waits for two steps only.
MAX_STEPS_IN_FLIGHT = 2


class InFlight:
  """Bounds how far the host runs ahead of the devices.

  JAX dispatches steps asynchronously: without a bound the loop queues as many steps as the loader can
  feed, the progress bar counts dispatched steps, and a stop request waits for the whole queue to compute
  before the state can be saved. `add` takes a step's outputs and waits for the oldest ones until at most
  `limit` are outstanding; it returns how many steps it saw finish.

  Args:
    limit: the most steps left outstanding after `add`.
  """

  def __init__(self, limit: int = MAX_STEPS_IN_FLIGHT):
    self.limit = limit
    self._queue = collections.deque()

  def add(self, outputs) -> int:
    """Queues one step's outputs (any tree of arrays); returns how many older steps it waited for."""
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
    """Blocks until every array of `outputs` is computed."""
    jax.block_until_ready(outputs)


def summarise_train(metrics_list):
  """Host means over the steps since the last log, and the per-step values.

  Args:
    metrics_list: the train steps' metric dicts (device arrays, as `steps.train_step` returns them), at
      least one.

  Returns:
    (values, fetched): values holds 'train/loss' and 'train/grad_norm' (means over the steps),
    'train/top1_error' and 'train/top5_error' (over all their examples) and, where the steps record it,
    'train/learning_rate' (the last step's); fetched is the list of per-step dicts of floats.
  """
  fetched = [{k: local_value(v) for k, v in m.items()} for m in metrics_list]
  count = sum(m["count"] for m in fetched)
  values = {
    "train/loss": float(np.mean([m["loss"] for m in fetched])),
    "train/top1_error": 1.0 - sum(m["top1"] for m in fetched) / count,
    "train/top5_error": 1.0 - sum(m["top5"] for m in fetched) / count,
    "train/grad_norm": float(np.mean([m["grad_norm"] for m in fetched])),
  }
  if "learning_rate" in fetched[-1]:
    values["train/learning_rate"] = fetched[-1]["learning_rate"]
  return values, fetched


class TrainLogger:
  """The steps' metrics, kept on the device until a log step; then the train and perf records, the
  progress bar, and the training time and images counted in `progress`.

  Args:
    writer: the run's metrics_io.MetricWriter.
    progress: the run's Progress, updated at every record.
    start_step: the step training starts (or resumes) from.
    total_steps: the run's last step, for the progress bar.
    steps_per_epoch: to label records with their epoch.
    global_batch: images per step over all processes.
    start_time: the run's start (time.time()), earlier segments included, for perf/wall_time_s.
    progress_bar: show a tqdm bar on stderr.
  """

  def __init__(
    self,
    writer,
    progress: Progress,
    *,
    start_step,
    total_steps,
    steps_per_epoch,
    global_batch,
    start_time,
    progress_bar: bool,
  ):
    self.writer, self.progress = writer, progress
    self.steps_per_epoch, self.global_batch, self.start_time = steps_per_epoch, global_batch, start_time
    self.pending, self.since = [], start_step  # metrics of the steps after `since`
    self.in_flight = InFlight()
    self.interval_start = time.time()
    self.bar = None
    if progress_bar:
      self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stderr)

  def add(self, metrics) -> None:
    """Keeps a step's metrics (on the device) and moves the bar by the steps seen to finish."""
    self.pending.append(metrics)
    finished = self.in_flight.add(metrics)
    if self.bar is not None:
      self.bar.update(finished)

  def collect(self, step):
    """(means, per-step values) of the steps since the last record; fetching waits for all of them."""
    values, per_step = summarise_train(self.pending)
    self.in_flight.clear()
    if self.bar is not None:
      self.bar.update(step - self.bar.n)
    return values, per_step

  def record(self, step, values) -> None:
    """Writes the train record `values` and a perf record (images/s since the last record, wall time)
    at `step`, and adds the interval's time and images to `progress`."""
    now = time.time()
    images = (step - self.since) * self.global_batch
    rate = images / max(now - self.interval_start, 1e-9)
    self.progress.train_time_s += now - self.interval_start
    self.progress.images_seen += images
    epoch = round(step / self.steps_per_epoch, 3)
    self.writer.write("train", step, values, epoch=epoch)
    self.writer.write("perf", step, {"perf/images_per_sec": rate, "perf/wall_time_s": now - self.start_time})
    if self.bar is not None:
      self.bar.set_postfix(
        epoch=f"{step / self.steps_per_epoch:.2f}", loss=f"{values['train/loss']:.3f}", img_s=f"{rate:.0f}"
      )
    self.pending, self.since = [], step

  def restart_interval(self) -> None:
    """Throughput counts training only: the next interval starts after this step's evaluation."""
    self.interval_start = time.time()

  def close(self) -> None:
    """Closes the progress bar."""
    if self.bar is not None:
      self.bar.close()


def nonfinite_problem(on_nonfinite: str, per_step: list, first_step: int, skipped_in_a_row: int) -> Optional[str]:
  """Why the run must stop for non-finite losses among the steps since `first_step` (their metrics in
  `per_step`), or None: 'stop' stops at the first, 'skip' once MAX_SKIPPED_IN_A_ROW updates in a row were
  dropped (optim.guard_nonfinite skips the updates themselves); fewer skips only log a warning.

  Args:
    on_nonfinite: 'stop' or 'skip' (optim.ON_NONFINITE).
    per_step: the steps' fetched metric dicts, step first_step + 1 first.
    first_step: the step before the first of them.
    skipped_in_a_row: updates dropped in a row so far (optim.skipped_in_a_row).

  Returns:
    The message to stop with, or None to go on.
  """
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


# ------------------------------------------------------------------------------------------ evaluation


@jax.jit
def add_sums(totals, sums):
  """Running metric sums plus one batch's, as one program (not one per metric)."""
  return jax.tree_util.tree_map(jnp.add, totals, sums)


def evaluate(p_eval_steps: Dict[str, Callable], state, batches, mesh, name: str = "eval") -> dict:
  """Errors over the host `batches` of a split for each view ('center', 'ten_crop'), recorded as `name`/...
  for the centre view and `name`_view/... for the others; padded examples are masked. The split is decoded
  once: every view's step runs on each batch.

  As in training, at most MAX_STEPS_IN_FLIGHT batches are left computing: an unbounded queue of eval
  programs can deadlock XLA's CPU client on a cross-device sum between virtual devices (a device's launch
  queue has a limit, and the launch it holds back can be the one the sum waits for).

  Args:
    p_eval_steps: view -> evaluation step (state, batch) -> metric sums (`steps.trainer_steps`).
    state: the train state, replicated.
    batches: the split's host batches, dicts with 'image', 'label' and 'mask' [B, ...].
    mesh: the local mesh the batches are placed on.
    name: the records' prefix.

  Returns:
    For each view, `<prefix>/loss` (mean), `/top1_error`, `/top5_error` and `/count` (examples), as floats.
  """
  totals = {view: None for view in p_eval_steps}
  in_flight = InFlight()
  for batch in device_prefetch(batches, mesh, 1):
    for view, p_eval in p_eval_steps.items():
      sums = p_eval(state, batch)
      totals[view] = sums if totals[view] is None else add_sums(totals[view], sums)
    in_flight.add(dict(totals))
  results = {}
  for view, view_totals in totals.items():
    view_totals = jax.tree_util.tree_map(local_value, view_totals)
    count = max(view_totals["count"], 1.0)
    prefix = name if view == "center" else f"{name}_{view}"
    results[f"{prefix}/loss"] = view_totals["loss_sum"] / count
    results[f"{prefix}/top1_error"] = 1.0 - view_totals["top1"] / count
    results[f"{prefix}/top5_error"] = 1.0 - view_totals["top5"] / count
    results[f"{prefix}/count"] = view_totals["count"]
  return results


class Evaluator:
  """Evaluations during and after training: which views each kind runs, the eval records, the best
  result, and the paper's plateau rule (section 5), which may cut the learning rate in the state.

  Args:
    p_evals: view -> evaluation step: every view `views` names, and 'center' where train_eval_split is set.
    views: 'periodic' and 'final' -> the view names each kind of evaluation runs.
    batches_of: `batches_of(split)` yields a split's host batches.
    writer: the run's metrics_io.MetricWriter.
    progress: the run's Progress (best result and plateau state are kept there).
    eval_split: the split evaluated.
    train_eval_split: a training split the final evaluation also scores, or empty for none.
    steps_per_epoch: to label records with their epoch.
    plateau: the rule's settings, keywords of `optim.apply_plateau`; None under another schedule.
  """

  def __init__(
    self,
    p_evals,
    views,
    batches_of,
    writer,
    progress: Progress,
    *,
    eval_split,
    train_eval_split,
    steps_per_epoch,
    plateau: Optional[dict],
  ):
    self.p_evals, self.views, self.batches_of = p_evals, views, batches_of
    self.writer, self.progress, self.plateau = writer, progress, plateau
    self.eval_split, self.train_eval_split, self.steps_per_epoch = eval_split, train_eval_split, steps_per_epoch
    self.mesh = steps.local_mesh()
    self.latest = {}

  def run(self, step, state, kind: str) -> dict:
    """One evaluation of `kind` ('periodic' or 'final'), recorded at `step`; returns its results."""
    chosen = {v: self.p_evals[v] for v in self.views[kind]}
    results = evaluate(chosen, state, self.batches_of(self.eval_split), self.mesh)
    if kind == "final" and self.train_eval_split:  # the training images as evaluation sees them
      centre = {"center": self.p_evals["center"]}
      results.update(evaluate(centre, state, self.batches_of(self.train_eval_split), self.mesh, "train_eval"))
    self.writer.write("eval", step, results, epoch=round(step / self.steps_per_epoch, 3))
    return results

  def during_training(self, step, state, *, last: bool):
    """Evaluates at `step` (the final views at the last step), keeps the best result and applies the
    plateau rule; returns the state, whose learning-rate factor the rule may have cut."""
    results = self.run(step, state, "final" if last else "periodic")
    self.latest = {**results, "step": step}
    top1 = results["eval/top1_error"]
    if not self.progress.best or top1 < self.progress.best["eval/top1_error"]:
      self.progress.best = {**results, "step": step}
    if self.plateau is None:
      return state
    before = optim.PlateauState.from_dict(self.progress.plateau)
    after, opt_state = optim.apply_plateau(before, state.opt_state, top1, **self.plateau)
    self.progress.plateau = after.to_dict()
    if after.factor == before.factor:
      return state
    logging.info("Validation error plateaued: learning rate x%g (cut %d).", after.factor, after.cuts)
    return steps.replicate(state.replace(opt_state=opt_state))

  def final(self, step, state) -> dict:
    """The final evaluation's results: those of `step` if it was just evaluated, else a new one."""
    if self.latest.get("step") == step:
      return {k: v for k, v in self.latest.items() if k != "step"}
    return self.run(step, state, "final")


# ------------------------------------------------------------------------------------------ checkpoints


class Checkpointer:
  """The run's checkpoints: restoring the newest readable one, the data-iterator state that matches each
  step (batches are drawn ahead for the prefetch queue, so it is recorded per step as they are drawn),
  saving, and which step is the last good one.

  Args:
    workdir: the run's directory; checkpoints go to `<workdir>/checkpoints`.
    keep: how many checkpoints to keep.
  """

  def __init__(self, workdir: str, keep: int):
    self.workdir = workdir
    self.manager = checkpointing.create_manager(os.path.join(workdir, "checkpoints"), max_to_keep=keep)
    self.last_good = None
    self._data_state_at = {}  # step -> the iterator state after the batches of steps < step were drawn

  def restore(self, template):
    """(state, Progress, data_state, step) from the newest readable checkpoint, or the template's start.

    Args:
      template: a train state of this config, whose structure and shapes a checkpoint must match.

    Returns:
      The restored tuple, or (template, Progress(), None, 0) where there is no checkpoint.

    Raises:
      checkpointing.CheckpointError: the checkpoints were written by another model or config.
    """
    restored = checkpointing.restore_latest(self.manager, template, self.workdir)
    if restored is None:
      return template, Progress(), None, 0
    state, data_state, extra, step = restored
    logging.info(RESUMED_MESSAGE, step, self.workdir)
    self.last_good = step
    return state, Progress(**extra), data_state, step

  def batches(self, loader, start_step: int):
    """The loader's batches from `start_step` on, noting the iterator state before each is drawn.

    Args:
      loader: the train loader (an iterator with `get_state()`).
      start_step: the step of the first batch drawn.
    """
    step = start_step
    while True:
      self._data_state_at[step] = loader.get_state()
      yield next(loader)
      step += 1

  def save(self, step: int, state, progress: Progress) -> None:
    """Starts saving `state`, `progress` and the data-iterator state from before batch `step` was drawn,
    so that a resumed run draws that batch next.

    Args:
      step: the steps taken (`batches` must have drawn batch `step` already).
      state: the train state after `step` steps.
      progress: the run's Progress.
    """
    checkpointing.save(self.manager, step, state, self._data_state_at[step], progress.to_dict())
    for s in [s for s in self._data_state_at if s < step]:
      del self._data_state_at[s]
    self.last_good = step

  def wait(self) -> None:
    """Until a save in progress has its files written."""
    self.manager.wait_until_finished()

  def where_the_last_good_one_is(self) -> str:
    """Waits for a save in progress, then says where the last good checkpoint is (for error messages)."""
    self.wait()
    if self.last_good is None:
      return "no checkpoint was written"
    return f"the last good checkpoint is step {self.last_good} in {self.manager.directory}, untouched"

  def close(self) -> None:
    """Closes the manager, after any save in progress."""
    self.manager.close()  # waits for a checkpoint still being written


class Preemption:
  """SIGTERM / SIGINT set a flag; the loop checkpoints at the next step boundary and exits cleanly.

  A context manager: the handlers are installed on entry (in the main thread only) and the previous ones
  restored on exit.

  Attributes:
    requested: the received signal's name ('SIGTERM', 'SIGINT'), or None.
  """

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
