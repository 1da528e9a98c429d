"""train_step / eval_step: model-agnostic reuse, pmap over 8 CPU devices == jit on one, masked evaluation."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alexnet_jax.training import optim, steps
from alexnet_jax.model.models import AlexNet


class MLP(nn.Module):
  """Not AlexNet: a two-layer perceptron with dropout, to show the step is model-agnostic."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.relu(nn.Dense(32)(x.reshape((x.shape[0], -1))))
    x = nn.Dropout(0.1, deterministic=not train)(x)
    return nn.Dense(4)(x)


def toy_problem(n, seed=0):
  """Four Gaussian blobs in 2-D; the label is the blob."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, size=n).astype(np.int32)
  centres = np.array([[2, 2], [-2, 2], [-2, -2], [2, -2]], np.float32)
  return {"image": (centres[labels] + rng.normal(scale=0.5, size=(n, 2))).astype(np.float32), "label": labels}


def test_reuse_an_mlp_under_pmap():
  assert jax.local_device_count() == 8
  model = MLP()
  state = steps.create_train_state(jax.random.key(0), model, jnp.zeros((1, 2)), optax.sgd(0.1, momentum=0.9))
  p_train = steps.pmap_train_step()
  p_eval = steps.pmap_eval_step()
  test = toy_problem(400, seed=1)
  before = jax.tree_util.tree_map(lambda x: x[0], p_eval(state, steps.shard_batch(test)))
  for i in range(60):
    state, metrics = p_train(state, steps.shard_batch(toy_problem(64, seed=100 + i)), jax.random.key(i))
  assert int(state.step) == 60
  assert metrics["count"].shape == (8,) and float(metrics["count"][0]) == 64
  after = jax.tree_util.tree_map(lambda x: x[0], p_eval(state, steps.shard_batch(test)))
  assert float(after["count"]) == 400
  assert float(after["top1"]) / 400 > 0.95 > float(before["top1"]) / 400
  assert float(after["loss_sum"]) < 0.2 * float(before["loss_sum"])


def test_batch_not_divisible_by_devices_is_a_clear_error():
  with pytest.raises(ValueError, match="A batch of 30 examples does not split evenly across 8 devices"):
    steps.shard_batch({"image": np.zeros((30, 2)), "label": np.zeros(30, np.int32)}, 8)


def tiny_alexnet_state(tx):
  model = AlexNet(preset="paper", num_classes=10, width_multiplier=0.125, dropout_rate=0.0, init_scheme="he")
  return steps.create_train_state(jax.random.key(0), model, jnp.zeros((1, 67, 67, 3)), tx)


def test_pmap_over_eight_devices_equals_jit_on_one():
  """One pmapped step over 8 devices on a global batch == one jitted step on the same batch (dropout off)."""
  tx = optim.sgd(lambda c: 0.05, momentum=0.9, weight_decay=5e-4, weight_decay_mode="coupled")
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.normal(size=(32, 67, 67, 3)).astype(np.float32),
    "label": rng.integers(0, 10, size=32).astype(np.int32),
  }
  # Two steps, so the momentum buffer and the second gradient are compared too.
  jit_state, pmap_state = tiny_alexnet_state(tx), tiny_alexnet_state(tx)
  initial = jax.tree_util.tree_map(np.asarray, jit_state.params)
  j_train = steps.jit_train_step(donate=False)
  p_train = steps.pmap_train_step(donate=False)
  for i in range(2):
    jit_state, jit_metrics = j_train(jit_state, batch, jax.random.key(i))
    pmap_state, pmap_metrics = p_train(pmap_state, steps.shard_batch(batch), jax.random.key(i))
  moved = 0.0
  for path, a in jax.tree_util.tree_leaves_with_path(jit_state.params):
    b = functools.reduce(lambda t, k: t[k.key], path, pmap_state.params)
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max(), err_msg=str(path))
    moved = max(moved, np.abs(a - functools.reduce(lambda t, k: t[k.key], path, initial)).max())
  assert moved > 1e-3  # the step did something
  for key in ("top1", "top5", "count"):
    assert float(pmap_metrics[key][0]) == float(jit_metrics[key])
  for key in ("loss", "grad_norm", "learning_rate"):
    np.testing.assert_allclose(float(pmap_metrics[key][0]), float(jit_metrics[key]), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(pmap_metrics["loss"]), float(pmap_metrics["loss"][0]))  # replicated


def test_step_rng_differs_per_device_and_per_step():
  keys = jax.vmap(lambda _: jax.random.key_data(steps.step_rng(jax.random.key(0), 3, "d")), axis_name="d")(
    jnp.arange(4)
  )
  assert len({tuple(np.asarray(k)) for k in keys}) == 4
  a = jax.random.key_data(steps.step_rng(jax.random.key(0), 3))
  b = jax.random.key_data(steps.step_rng(jax.random.key(0), 4))
  assert not np.array_equal(a, b)


class Linear(nn.Module):
  """logits = x W + b, optionally after dropout of x: a model whose loss a test can write out."""

  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    return nn.Dense(4)(nn.Dropout(self.dropout_rate, deterministic=not train)(x))


def numpy_loss(params, images, labels):
  logits = np.asarray(images, np.float64) @ np.asarray(params["Dense_0"]["kernel"], np.float64)
  logits += np.asarray(params["Dense_0"]["bias"], np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return -logp[np.arange(len(labels)), labels].mean()


def test_the_preprocess_hook_gets_each_devices_own_key_and_feeds_the_model():
  """Under pmap the hook's key is the documented one, split(fold_in(fold_in(key, step), device))[0], so
  every device draws its own crops: a hook that replaces the images by noise from its key gives the loss
  written out in NumPy from each device's noise, averaged over the devices."""
  state = steps.create_train_state(jax.random.key(0), Linear(), jnp.zeros((1, 2)), optax.sgd(0.0))
  state = state.replace(step=jnp.asarray(3, jnp.int32))
  batch = toy_problem(16)

  def noise_for_images(batch, rng):
    return {**batch, "image": jax.random.normal(rng, batch["image"].shape)}

  _, metrics = steps.pmap_train_step(preprocess=noise_for_images, donate=False)(
    state, steps.shard_batch(batch), jax.random.key(7)
  )
  losses = []
  for device, labels in enumerate(batch["label"].reshape(8, 2)):
    key = jax.random.split(jax.random.fold_in(jax.random.fold_in(jax.random.key(7), 3), device))[0]
    losses.append(numpy_loss(state.params, jax.random.normal(key, (2, 2)), labels))
  np.testing.assert_allclose(float(metrics["loss"][0]), np.mean(losses), rtol=1e-5)


def test_dropout_masks_differ_across_devices():
  """Every device gets the same examples: with one mask for all, the averaged loss over 8 devices would be
  device 0's loss, which a 1-device pmap with the same key computes."""
  state = steps.create_train_state(jax.random.key(0), Linear(dropout_rate=0.5), jnp.zeros((1, 16)), optax.sgd(0.0))
  examples = {"image": np.ones((2, 16), np.float32), "label": np.array([0, 1], np.int32)}
  everywhere = jax.tree_util.tree_map(lambda x: np.stack([x] * 8), examples)
  _, eight = steps.pmap_train_step(donate=False)(state, everywhere, jax.random.key(1))
  _, one = steps.pmap_train_step(donate=False, devices=jax.local_devices()[:1])(
    state, jax.tree_util.tree_map(lambda x: x[None], examples), jax.random.key(1)
  )
  assert abs(float(eight["loss"][0]) - float(one["loss"][0])) > 1e-3


def test_eval_mask_makes_padding_count_nothing():
  state = steps.create_train_state(jax.random.key(0), MLP(), jnp.zeros((1, 2)), optax.sgd(0.1))
  data = toy_problem(13)
  unpadded = steps.jit_eval_step()(state, data)
  padded = {
    "image": np.concatenate([data["image"], np.full((3, 2), 9.0, np.float32)]),
    "label": np.concatenate([data["label"], np.zeros(3, np.int32)]),
    "mask": np.concatenate([np.ones(13, np.float32), np.zeros(3, np.float32)]),
  }
  got = steps.pmap_eval_step()(state, steps.shard_batch(padded))
  for key in ("loss_sum", "top1", "top5", "count"):
    np.testing.assert_allclose(float(got[key][0]), float(unpadded[key]), rtol=1e-5)
  assert float(got["count"][0]) == 13
  # Independent check of the sums: per-example loss from the logits.
  logits = np.asarray(state.apply_fn({"params": state.params}, data["image"], train=False), np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(float(unpadded["loss_sum"]), -logp[np.arange(13), data["label"]].sum(), rtol=1e-5)
  np.testing.assert_allclose(float(unpadded["top1"]), (logits.argmax(-1) == data["label"]).sum())


def test_multi_view_eval_averages_softmax():
  state = steps.create_train_state(jax.random.key(0), MLP(), jnp.zeros((1, 2)), optax.sgd(0.1))
  rng = np.random.default_rng(0)
  views = rng.normal(scale=3.0, size=(6, 10, 2)).astype(np.float32)
  labels = rng.integers(0, 4, size=6).astype(np.int32)
  got = steps.jit_eval_step()(state, {"image": views[:, :, None, None, :].reshape(6, 10, 1, 1, 2), "label": labels})
  logits = np.asarray(state.apply_fn({"params": state.params}, views.reshape(60, 2), train=False), np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs = (probs / probs.sum(-1, keepdims=True)).reshape(6, 10, 4).mean(1)
  np.testing.assert_allclose(float(got["loss_sum"]), -np.log(probs[np.arange(6), labels]).sum(), rtol=1e-5)
  np.testing.assert_allclose(float(got["top1"]), (probs.argmax(-1) == labels).sum())


def test_the_pmapped_step_compiles_once(caplog):
  """A replicated state has the sharding pmap returns, so steps 2.. reuse step 1's executable."""
  import logging

  tx = optim.sgd(lambda c: 0.05)
  state = steps.replicate(tiny_alexnet_state(tx))
  p_train = steps.pmap_train_step()
  batch = steps.shard_batch({"image": np.zeros((16, 67, 67, 3), np.float32), "label": np.zeros(16, np.int32)})
  jax.config.update("jax_log_compiles", True)
  try:
    counts = []
    for i in range(3):
      caplog.clear()
      with caplog.at_level(logging.WARNING, logger="jax"):
        state, metrics = p_train(state, batch, jax.random.key(i))
        jax.block_until_ready(metrics)
      counts.append(sum(r.getMessage().startswith("Compiling") for r in caplog.records))
  finally:
    jax.config.update("jax_log_compiles", False)
  assert counts[0] >= 1 and counts[1:] == [0, 0], counts


def test_correct_top_k_against_a_sorted_reference_with_ties():
  """Against numpy: a stable sort by decreasing logit (ties to the lower class index), label in the first
  k. Logits drawn from few values, so ties at the k-th place are common."""
  rng = np.random.default_rng(0)
  logits = rng.integers(0, 4, size=(500, 10)).astype(np.float32)
  labels = rng.integers(0, 10, size=500).astype(np.int32)
  order = np.argsort(-logits, axis=-1, kind="stable")
  for k in (1, 3, 5, 10, 12):
    expected = (order[:, :k] == labels[:, None]).any(axis=-1)
    got = np.asarray(steps.correct_top_k(jnp.asarray(logits), jnp.asarray(labels), k))
    np.testing.assert_array_equal(got, expected.astype(np.float32))
  nan_label = logits.copy()
  nan_label[np.arange(500), labels] = np.nan
  assert float(steps.correct_top_k(jnp.asarray(nan_label), jnp.asarray(labels), 5).sum()) == 0.0


def test_label_smoothing_reaches_the_loss_of_the_train_step():
  """Loss = mean over examples of -sum_c q_c log softmax(z)_c with q = (1 - s) onehot + s / C."""
  model = MLP()
  state = steps.create_train_state(jax.random.key(0), model, jnp.zeros((1, 2)), optax.sgd(0.0))
  batch = toy_problem(8)
  smoothing = 0.2
  _, metrics = steps.jit_train_step(label_smoothing=smoothing, donate=False)(state, batch, jax.random.key(3))
  # The same dropout masks: recompute the logits as the step does (its dropout rng is the split of the
  # step-folded key), then the loss by hand in float64.
  _, dropout_rng = jax.random.split(steps.step_rng(jax.random.key(3), 0))
  logits = np.asarray(
    model.apply({"params": state.params}, batch["image"], train=True, rngs={"dropout": dropout_rng}), np.float64
  )
  log_probs = logits - logits.max(1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
  targets = (1 - smoothing) * np.eye(4)[batch["label"]] + smoothing / 4
  np.testing.assert_allclose(float(metrics["loss"]), -(targets * log_probs).sum(1).mean(), rtol=1e-5)


def test_jit_over_a_mesh_equals_pmap_over_eight_devices():
  """The same two steps (dropout off) as jit over an 8-device mesh and as pmap: the same parameters,
  metrics and evaluation sums; the state comes back replicated on every device of the mesh."""
  assert jax.local_device_count() == 8
  tx = optim.sgd(lambda c: 0.05, momentum=0.9, weight_decay=5e-4, weight_decay_mode="coupled")
  rng = np.random.default_rng(1)
  batch = {
    "image": rng.normal(size=(32, 67, 67, 3)).astype(np.float32),
    "label": rng.integers(0, 10, size=32).astype(np.int32),
  }
  sharded_state, pmap_state = tiny_alexnet_state(tx), tiny_alexnet_state(tx)
  s_train, p_train = steps.sharded_train_step(donate=False), steps.pmap_train_step(donate=False)
  for i in range(2):
    sharded_state, s_metrics = s_train(sharded_state, batch, jax.random.key(i))
    pmap_state, p_metrics = p_train(pmap_state, steps.shard_batch(batch), jax.random.key(i))
  for path, a in jax.tree_util.tree_leaves_with_path(pmap_state.params):
    b = functools.reduce(lambda t, k: t[k.key], path, sharded_state.params)
    assert len(b.sharding.device_set) == 8 and b.sharding.is_fully_replicated
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max(), err_msg=str(path))
  for key in ("loss", "grad_norm", "top1", "count"):
    np.testing.assert_allclose(float(s_metrics[key]), float(p_metrics[key][0]), rtol=1e-5)
  eval_batch = {**batch, "mask": np.ones(32, np.float32)}
  s_sums = steps.sharded_eval_step()(sharded_state, eval_batch)
  p_sums = steps.pmap_eval_step()(pmap_state, steps.shard_batch(eval_batch))
  for key in ("loss_sum", "top1", "top5", "count"):
    np.testing.assert_allclose(float(s_sums[key]), float(p_sums[key][0]), rtol=1e-5)
