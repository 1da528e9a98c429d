"""restore_latest on damaged checkpoints and on checkpoints of another config, in this process on a small
model: damage (truncated array files, a half-written metadata file) is moved aside and the previous
checkpoint used; another config's checkpoint is refused with nothing moved."""

import glob
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alexnet_jax.training import checkpointing, steps


class MLP(nn.Module):
  width: int = 4

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(3)(nn.Dense(self.width)(x))


def state_of(width=4, seed=0):
  return steps.create_train_state(jax.random.key(seed), MLP(width), jnp.zeros((1, 2)), optax.sgd(0.1, momentum=0.9))


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
  """Checkpoints at steps 1 and 2 of the small model, with different parameters in each."""
  directory = tmp_path_factory.mktemp("saved") / "checkpoints"
  manager = checkpointing.create_manager(str(directory), max_to_keep=2)
  for step in (1, 2):
    checkpointing.save(manager, step, state_of(seed=step).replace(step=step), {"batches": step}, {"at": step})
  manager.wait_until_finished()
  manager.close()
  return directory


def restore_copy(two_checkpoints, tmp_path, damage=None, template=None):
  workdir = tmp_path / "work"
  shutil.copytree(two_checkpoints, workdir / "checkpoints")
  if damage:
    damage(workdir / "checkpoints" / "2" / "state")
  manager = checkpointing.create_manager(str(workdir / "checkpoints"), max_to_keep=2)
  try:
    return workdir, checkpointing.restore_latest(manager, template or state_of(), str(workdir))
  finally:
    manager.close()


def truncate_array_files(state_dir):
  files = [p for p in glob.glob(f"{state_dir}/**/d/*", recursive=True) if os.path.isfile(p)]
  assert files
  for path in files:
    os.truncate(path, os.path.getsize(path) // 2)


def truncate_metadata(state_dir):
  os.truncate(state_dir / "_METADATA", 100)


def test_the_newest_checkpoint_is_restored_exactly(two_checkpoints, tmp_path):
  _, (state, data_state, extra, step) = restore_copy(two_checkpoints, tmp_path)
  assert step == 2 and data_state == {"batches": 2} and extra == {"at": 2}
  for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(state_of(seed=2).params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("damage", [truncate_array_files, truncate_metadata])
def test_a_damaged_checkpoint_is_moved_aside_and_the_previous_one_used(two_checkpoints, tmp_path, damage):
  workdir, (state, data_state, _, step) = restore_copy(two_checkpoints, tmp_path, damage)
  assert step == 1 and data_state == {"batches": 1}
  for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(state_of(seed=1).params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]
  [aside] = (workdir / "corrupt_checkpoints").iterdir()
  assert aside.name.startswith("2-") and (aside / "state").is_dir()  # kept, not deleted


def test_another_configs_checkpoints_are_refused_and_left_in_place(two_checkpoints, tmp_path):
  with pytest.raises(
    checkpointing.CheckpointError, match=r"this config has \(5, 3\), the checkpoint \(4, 3\)\).*another model"
  ):
    restore_copy(two_checkpoints, tmp_path, template=state_of(width=5))
  workdir = tmp_path / "work"
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
  assert not (workdir / "corrupt_checkpoints").exists()


def test_max_to_keep_keeps_only_the_newest(tmp_path):
  """config.keep_checkpoints reaches the manager as max_to_keep (train.py); here the manager's side."""
  manager = checkpointing.create_manager(str(tmp_path / "checkpoints"), max_to_keep=2)
  for step in (1, 2, 3):
    checkpointing.save(manager, step, state_of().replace(step=step), {}, {})
  manager.wait_until_finished()
  manager.close()
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [2, 3]
