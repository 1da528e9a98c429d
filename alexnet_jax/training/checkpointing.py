"""Checkpoints with orbax: the train state, the data iterator's state and the loop's bookkeeping, together.

`restore_latest` walks back from the newest checkpoint: one that cannot be read (half-written, corrupt) is
moved aside to `<workdir>/corrupt_checkpoints/` with a warning, and the previous one is used. If
checkpoints exist but none can be restored into this config's state (another model, say), it stops with an
error instead of starting over, so a run never trains over somebody's checkpoints.
"""

import os
import shutil
import time
from typing import Any, Optional, Tuple

from absl import logging
import flax
import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """Checkpoints that this config's train state cannot use: the message says what to do."""

  pass


def create_manager(directory: str, *, max_to_keep: int) -> ocp.CheckpointManager:
  """An orbax CheckpointManager of items 'state', 'data' and 'extra' in `directory` (created if absent).

  Args:
    directory: where the `<step>/` folders go.
    max_to_keep: how many of the newest checkpoints to keep.

  Returns:
    The manager; half-written temporary folders left by a killed run are cleaned up.
  """
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=("state", "data", "extra"))


def _host_tree(state):
  """The state as host numpy arrays. The train state is replicated, so every process holds all of it;
  as numpy it is written once (by the primary process) and read back by every process, whatever the
  device layout, which a host-local replicated jax.Array would not allow in a multi-process run."""
  return jax.device_get(flax.serialization.to_state_dict(state))


def save(manager: ocp.CheckpointManager, step: int, state, data_state: dict, extra: dict) -> None:
  """Starts an asynchronous save: the arrays are on the host before this returns, files follow.

  The data iterator state is the one of process 0; every process consumed the same number of batches of
  its own shard, and the loader state is that count (data/order.py), so it is the same on all of them.

  Args:
    manager: from `create_manager`.
    step: the checkpoint's step, saved whatever the manager's save interval (`force=True`).
    state: the train state (replicated).
    data_state: the loader's state, JSON-serialisable.
    extra: the loop's bookkeeping (loop.Progress.to_dict()), JSON-serialisable.
  """
  manager.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(_host_tree(state)), data=ocp.args.JsonSave(data_state), extra=ocp.args.JsonSave(extra)
    ),
    force=True,
  )


def _shapes(template):
  """The train state's tree of array shapes: what a checkpoint must match (shapes and structure, not
  dtypes: orbax may return a saved scalar as a Python number)."""
  return jax.tree_util.tree_map(np.shape, _host_tree(template))


def _restore(manager, step, template):
  restored = manager.restore(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardRestore(_host_tree(template)), data=ocp.args.JsonRestore(), extra=ocp.args.JsonRestore()
    ),
  )
  expected = _shapes(template)
  found = jax.tree_util.tree_map(np.shape, restored["state"])
  if expected != found:
    raise ValueError(f"checkpoint structure or shape mismatch: {_first_difference(expected, found)}")
  return flax.serialization.from_state_dict(template, restored["state"]), restored["data"], restored["extra"]


def _first_difference(expected, found) -> str:
  flat_e = dict(jax.tree_util.tree_leaves_with_path(expected, is_leaf=lambda x: isinstance(x, tuple)))
  flat_f = dict(jax.tree_util.tree_leaves_with_path(found, is_leaf=lambda x: isinstance(x, tuple)))
  for path in list(flat_e) + [p for p in flat_f if p not in flat_e]:  # in the template's order
    if flat_e.get(path) != flat_f.get(path):
      return f"{jax.tree_util.keystr(path)}: this config has {flat_e.get(path)}, the checkpoint {flat_f.get(path)}"
  return "different tree structure"


def restore_latest(manager: ocp.CheckpointManager, template, workdir: str) -> Optional[Tuple[Any, dict, dict, int]]:
  """(state, data_state, extra, step) from the newest readable checkpoint, or None when there is none.

  Args:
    manager: from `create_manager`.
    template: a train state of this config: the structure and shapes a checkpoint must match.
    workdir: the run's directory; unreadable checkpoints move to `<workdir>/corrupt_checkpoints/`.

  Returns:
    The restored state (host arrays in the template's structure), the data and extra JSON, and the step;
    None when no checkpoint can be read.

  Raises:
    CheckpointError: a checkpoint's own record says another model or config wrote it.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  for step in steps:
    try:
      state, data_state, extra = _restore(manager, step, template)
      if step != steps[0]:
        logging.warning("Resumed from checkpoint %d after %d unreadable newer one(s).", step, steps.index(step))
      return state, data_state, extra, step
    except Exception as e:  # orbax raises many kinds for a damaged checkpoint
      difference = written_by_another_config(manager, step, template)
      if difference is not None:
        raise CheckpointError(
          f"The checkpoints in {manager.directory} (steps {steps}) cannot be restored into this config's "
          f"train state ({difference}): they were written by another model or config. Use a new --workdir, "
          f"or the config that wrote them (see config.json there)."
        ) from e
      aside = os.path.join(workdir, "corrupt_checkpoints", f"{step}-{int(time.time())}")
      logging.warning(
        "Checkpoint at step %d in %s cannot be read (%s: %s). Moving it to %s and falling back "
        "to the previous checkpoint.",
        step,
        manager.directory,
        type(e).__name__,
        str(e)[:300],
        aside,
      )
      if jax.process_index() == 0:  # one process moves it; the others only skip it
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        shutil.move(os.path.join(str(manager.directory), str(step)), aside)
      manager.reload()
  return None


def written_by_another_config(manager: ocp.CheckpointManager, step: int, template) -> Optional[str]:
  """The first difference between the tree a checkpoint records (its metadata: names and shapes, readable
  when the array files are damaged) and `template`'s; None when they agree or the metadata cannot be read.

  A checkpoint that fails to restore is damage (moved aside, the previous one used) unless its own record
  says another config wrote it: then nothing is moved, and the run stops.

  Args:
    manager: from `create_manager`.
    step: the checkpoint's step.
    template: a train state of this config.

  Returns:
    A description of the first differing leaf (path and both shapes), or None.
  """
  try:
    recorded = manager.item_metadata(step)["state"]
    recorded = getattr(recorded, "tree", recorded)
    found = jax.tree_util.tree_map(
      lambda leaf: tuple(leaf.shape), recorded, is_leaf=lambda leaf: hasattr(leaf, "shape")
    )
  except Exception:  # no readable record: the damage reaches the metadata too
    return None
  expected = _shapes(template)
  return None if found == expected else _first_difference(expected, found)
