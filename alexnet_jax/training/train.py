"""`train_and_evaluate(config, workdir)`: trains a run, evaluates it and leaves it resumable.

How a batch travels: host uint8 batches from the loader, split across the local devices two steps ahead,
augmented on the device inside the pmapped `steps.train_step`; metrics stay on the device until a log step,
so the host never waits in between.

Everything needed to resume lives in the workdir: `checkpoints/` (train state, data iterator state,
plateau state), `metrics.jsonl`, `tensorboard/` and the JSON files of run_files.py. A run resumes from its
latest readable checkpoint automatically; SIGTERM / SIGINT make it save at the next step boundary and exit
cleanly. The checks and the construction before any of this are run_setup.py's.
"""

import contextlib
import dataclasses
import os
import time

import jax
import ml_collections

from alexnet_jax.data import pipeline, preprocess
from alexnet_jax.training import loop, metrics_io, optim, run_files, run_setup, steps


def make_evaluator(run: run_setup.Setup, writer, progress: loop.Progress) -> loop.Evaluator:
  config = run.config
  return loop.Evaluator(
    run.eval_steps,
    {
      "periodic": preprocess.view_names(config.augment.eval_views),
      "final": preprocess.view_names(config.augment.final_eval_views),
    },
    run.batches_of,
    writer,
    progress,
    eval_split=config.dataset.eval_split,
    train_eval_split=config.dataset.train_eval_split,
    steps_per_epoch=run.steps_per_epoch,
    plateau=optim.plateau_rule(config.optim, run.global_batch) if config.optim.schedule == "plateau" else None,
  )


def evaluate_only(run: run_setup.Setup, evaluator: loop.Evaluator, state, step: int, restored: bool) -> dict:
  """`eval_only`: the final evaluation of the newest checkpoint, written to eval.json (not metrics.jsonl)."""
  if not restored:
    raise run_setup.TrainingError(f"eval_only needs a checkpoint, and {run.workdir}/checkpoints has none.")
  summary = {"eval_only": True, "step": step, "final": evaluator.run(step, state, "final")}
  if jax.process_index() == 0:
    run_files.write_json(os.path.join(run.workdir, "eval.json"), summary)
  return summary


def stop_if_not_finite(config, per_step, since: int, state, checkpointer: loop.Checkpointer, record) -> None:
  """Raises TrainingError where `loop.nonfinite_problem` finds the steps since `since` must stop the run,
  after `record(problem)` has written the divergence down: a run that diverged is a result, not a crash."""
  problem = loop.nonfinite_problem(config.on_nonfinite, per_step, since, optim.skipped_in_a_row(state.opt_state))
  if problem:
    record(problem)
    advice = ", or set on_nonfinite=skip to drop such updates." if config.on_nonfinite == "stop" else "."
    raise run_setup.TrainingError(
      f"{problem}; {checkpointer.where_the_last_good_one_is()}. Lower optim.learning_rate{advice}"
    )


def open_train_loader(config, run, data_state):
  """This process's training batches, from the iterator state a checkpoint saved (None: the first batch)."""
  loader = pipeline.train_loader(
    run_setup.loader_config(config, config.dataset.train_split, batch_size=run.per_process_batch, shuffle=True)
  )
  if data_state is not None:
    try:
      loader.set_state(data_state)
    except BaseException:
      loader.close()  # its decoding workers
      raise
  return loader


def open_writer(run: run_setup.Setup, start_step: int, is_logger: bool) -> metrics_io.MetricWriter:
  """The metric writer, once config.json is saved and metrics.jsonl cut back to the checkpoint's step: on
  the process that logs, and never for an evaluation-only run (which writes eval.json alone)."""
  writes = is_logger and not run.config.eval_only
  if writes:
    run_files.save_config(run.config, run.workdir, start_step)
    metrics_io.truncate_after(os.path.join(run.workdir, "metrics.jsonl"), start_step)
  return metrics_io.MetricWriter(run.workdir, enabled=writes)


@dataclasses.dataclass
class Segment:
  """One stretch of a run, from its restore to its last step or a preemption: the parts the loop drives."""

  run: run_setup.Setup
  checkpointer: loop.Checkpointer
  progress: loop.Progress
  evaluator: loop.Evaluator
  logger: loop.TrainLogger
  run_started: float  # time.time() at the run's start: earlier segments' wall time counts

  def wall_time_s(self) -> float:
    return time.time() - self.run_started

  def save(self, step: int, state) -> None:
    self.progress.wall_time_s = self.wall_time_s()
    self.checkpointer.save(step, state, self.progress)


def train_segment(segment: Segment, state, step: int, batches, is_logger: bool):
  """Trains from `step` to the run's last step, or to the boundary after a SIGTERM / SIGINT, logging,
  evaluating and checkpointing where `Setup.is_boundary` says. Returns (state, step, the signal's name or
  None); the last step is always checkpointed."""
  run, logger, preempted = segment.run, segment.logger, None

  def record_divergence(problem: str) -> None:  # the loop's state and step at the call
    if is_logger:
      summary = run_files.summarise(run, state, step, None, {}, segment.progress, segment.wall_time_s())
      run_files.write_divergence(run, summary, problem)

  with loop.Preemption() as preemption:
    while step < run.total_steps and not preempted:
      state, metrics = run.train_step(state, next(batches), run.step_rng)
      step += 1
      logger.add(metrics)
      now, stop = run.is_boundary(step), preemption.requested  # a request arriving later waits a step
      if not any(now.values()) and not stop:
        continue
      values, per_step = logger.collect(step)
      stop_if_not_finite(run.config, per_step, logger.since, state, segment.checkpointer, record_divergence)
      logger.record(step, values)
      if now["eval"]:
        state = segment.evaluator.during_training(step, state, last=step == run.total_steps)
      logger.restart_interval()
      if now["checkpoint"] or stop:
        segment.save(step, state)
      preempted = stop
    if not preempted and segment.checkpointer.last_good != step:
      segment.save(step, state)
  return state, step, preempted


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint) and returns the summary."""
  start_time, is_logger = time.time(), jax.process_index() == 0
  run = run_setup.set_up(config, workdir)
  # However the run ends (finished, preempted, an error), the decoding workers stop, a checkpoint being
  # written is finished, and the metric files and progress bar are closed.
  with contextlib.ExitStack() as cleanup:
    checkpointer = loop.Checkpointer(run.workdir, config.keep_checkpoints)
    cleanup.callback(checkpointer.close)
    state, progress, data_state, start_step = checkpointer.restore(run.state)
    run_started = start_time - progress.wall_time_s  # earlier segments count: wall time is the run's own
    done = (
      None
      if config.eval_only or not start_step
      else run_files.finished_summary(run.workdir, start_step, run.total_steps)
    )
    if done is not None:  # nothing to train: say so, write nothing (eval_only re-evaluates)
      return {**done, "already_finished": True}
    writer = open_writer(run, start_step, is_logger)
    cleanup.callback(writer.close)
    state = steps.replicate(state)  # the sharding every step returns: the step compiles once
    evaluator = make_evaluator(run, writer, progress)
    if config.eval_only:
      return evaluate_only(run, evaluator, state, start_step, checkpointer.last_good is not None)

    loader = open_train_loader(config, run, data_state)
    cleanup.callback(loader.close)  # the decoding workers
    batches = loop.device_prefetch(
      checkpointer.batches(loader, start_step), steps.local_mesh(), config.prefetch_to_device
    )
    logger = loop.TrainLogger(
      writer,
      progress,
      start_step=start_step,
      total_steps=run.total_steps,
      steps_per_epoch=run.steps_per_epoch,
      global_batch=run.global_batch,
      start_time=run_started,
      progress_bar=is_logger and config.progress_bar,
    )
    cleanup.callback(logger.close)
    segment = Segment(run, checkpointer, progress, evaluator, logger, run_started)
    state, step, preempted = train_segment(segment, state, start_step, batches, is_logger)
    checkpointer.wait()
    logger.close()
    loader.close()  # its workers stop before the final evaluation starts its own
    final = {} if preempted else evaluator.final(step, state)
    summary = run_files.summarise(run, state, step, preempted, final, progress, segment.wall_time_s())
    if is_logger and not preempted:
      run_files.write_json(os.path.join(run.workdir, "summary.json"), summary)
  return summary
