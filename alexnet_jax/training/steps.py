"""The reusable training core: TrainState, train_step, eval_step and their jit / pmap wrappers.

Nothing here knows about AlexNet or about the data: a model is any Flax module whose `__call__` takes
`train=`; a batch is a dict `{'image': ..., 'label': int32[B]}` (plus an optional float `mask` [B] for
evaluation padding); device-side augmentation enters through the optional `preprocess(batch, rng)` hook.

    from alexnet_jax.training import steps
    state = steps.create_train_state(jax.random.key(0), model, sample_input, optax.sgd(0.1))
    state = steps.replicate(state)                    # optional: avoids a second compilation
    p_train = steps.pmap_train_step()                 # or steps.jit_train_step() on one device
    state, metrics = p_train(state, steps.shard_batch(batch), rng)
    s_train = steps.sharded_train_step()              # or jit over a mesh: the batch as it is
    state, metrics = s_train(state, batch, rng)

Data parallelism keeps one state, never stacked per device (no `device_put_replicated`, no
`flax.jax_utils.replicate`): `pmap` receives it with `in_axes=None` (broadcast) and returns it with
`out_axes=None` (the gradients are `pmean`ed, so every device holds the same state), and only the batch
carries a leading device axis. The state then has the same shapes on one device or many, so a checkpoint
needs no unstacking. `replicate` places a state the way pmap returns it. The jit form
(`sharded_train_step`) computes the step over a mesh instead, with XLA inserting the all-reduce.
"""

import functools
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class TrainState(train_state.TrainState):
  """Flax's TrainState (step, apply_fn, params, tx, opt_state) plus the model's other mutable collections.

  Attributes:
    model_state: dict of collection name -> tree for every variable collection other than `params` and
      `intermediates` (e.g. `batch_stats`); empty for AlexNet. The train step updates it and, under a named
      axis, averages it across devices.
  """

  model_state: Any = flax.struct.field(default_factory=dict)


def create_train_state(rng, model, sample_input, tx) -> TrainState:
  """Initialises `model` and wraps its variables and the optimiser in a TrainState at step 0.

  The model runs once with train=False, so no dropout rng is needed; sown `intermediates` are dropped.

  Args:
    rng: PRNG key for the parameter initialisers.
    model: a Flax module whose `__call__(x, *, train)` returns logits.
    sample_input: a batch of inputs, e.g. float32 [1, H, W, 3]; its shape fixes the parameters' shapes
      (AlexNet's fc6 fan-in follows H and W), its values do not matter.
    tx: the optax optimiser.

  Returns:
    A TrainState with the model's `params`, its other collections in `model_state`, `tx` and tx's
    initial state.
  """
  variables = model.init(rng, sample_input, train=False)
  variables = flax.core.unfreeze(variables)
  params = variables.pop("params")
  variables.pop("intermediates", None)
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx, model_state=variables)


def cross_entropy(logits, labels, *, label_smoothing: float = 0.0):
  """Per-example softmax cross-entropy, computed in float32.

  Args:
    logits: float [B, num_classes], any float dtype (cast to float32).
    labels: int [B], class indices in [0, num_classes).
    label_smoothing: probability mass spread uniformly over all classes; 0 (the default) is the paper's
      plain cross-entropy.

  Returns:
    float32 [B] losses.
  """
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if label_smoothing:
    targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def correct_top_k(logits, labels, k: int):
  """Whether each label is among its example's `k` highest logits, as float32 1.0 or 0.0.

  Computed as the label's rank (how many classes come before it) rather than with `lax.top_k`: compares
  and a sum, which XLA fuses into one pass over the logits, where top-k is a sort-like kernel of its own.
  Ties are broken towards the lower class index (a class whose logit equals the label's comes before it
  when its index is lower). A NaN logit for the label never counts as correct.

  Args:
    logits: float [B, num_classes].
    labels: int [B], class indices.
    k: how many of the highest logits count (1 for top-1, 5 for top-5).

  Returns:
    float32 [B]: 1.0 where the label ranks within the first k, else 0.0.
  """
  own = jnp.take_along_axis(logits, labels[:, None], axis=-1)  # [B, 1]
  before = (logits > own) | ((logits == own) & (jnp.arange(logits.shape[-1]) < labels[:, None]))
  rank = jnp.sum(before, axis=-1)
  return ((rank < k) & ~jnp.isnan(own[:, 0])).astype(jnp.float32)


def _learning_rate(opt_state):
  """The rate the optimiser applied at the last update, when its state records one (optim.sgd does)."""
  try:
    return optax.tree.get(opt_state, "learning_rate")
  except KeyError:
    return None


def step_rng(rng, step, axis_name: Optional[str] = None):
  """The key of one step (and device): `rng` folded with `step` and, under a named axis, the device index.

  Args:
    rng: the run's PRNG key, the same at every step.
    step: int scalar, the train step (`state.step`).
    axis_name: the pmap / shard_map axis to fold the device index of, or None outside one (one device,
      or jit over a mesh).

  Returns:
    A PRNG key independent for every step and every device along `axis_name`.
  """
  rng = jax.random.fold_in(rng, step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, lax.axis_index(axis_name))
  return rng


def train_step(
  state: TrainState,
  batch,
  rng,
  *,
  axis_name: Optional[str] = None,
  preprocess: Optional[Callable] = None,
  label_smoothing: float = 0.0,
):
  """One optimiser step on `batch`; pure, so it runs under `jax.jit` or `jax.pmap`/`shard_map`.

  The dropout and preprocessing keys come from `step_rng(rng, state.step, axis_name)`: every step and every
  device draws independent masks and crops from one user seed. Under a named axis the gradients and
  `model_state` are averaged across devices, so every device applies the same update.

  Args:
    state: the TrainState.
    batch: dict with 'image' (the model's input, e.g. float [B, H, W, 3], or what `preprocess` turns into
      it) and 'label' (int32 [B]); B is the per-device batch under a named axis.
    rng: PRNG key, the same at every step (folded with the step here).
    axis_name: the named device axis to average over (pmap / shard_map), or None on one device and under
      jit over a mesh.
    preprocess: optional `preprocess(batch, rng) -> batch` run on the device first (random crops, flips).
    label_smoothing: passed to `cross_entropy`.

  Returns:
    (new_state, metrics). metrics is a dict of scalars, identical on all devices when `axis_name` is set:
    `loss` (mean cross-entropy; under a named axis the mean of the devices' means), `top1` and `top5`
    (correct counts), `count` (examples), `grad_norm` (global L2 norm of the gradient, after averaging)
    and `learning_rate` (the rate of this update) where the optimiser state records one (optim.sgd does).
  """
  preprocess_rng, dropout_rng = jax.random.split(step_rng(rng, state.step, axis_name))
  if preprocess is not None:
    batch = preprocess(batch, preprocess_rng)
  labels = batch["label"]

  def loss_fn(params):
    variables = {"params": params, **state.model_state}
    mutable = list(state.model_state.keys())
    outputs = state.apply_fn(variables, batch["image"], train=True, rngs={"dropout": dropout_rng}, mutable=mutable)
    logits, new_model_state = outputs
    loss = jnp.mean(cross_entropy(logits, labels, label_smoothing=label_smoothing))
    return loss, (logits, new_model_state)

  (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  metrics = {
    "loss": loss,
    "top1": jnp.sum(correct_top_k(logits, labels, 1)),
    "top5": jnp.sum(correct_top_k(logits, labels, 5)),
    "count": jnp.asarray(labels.shape[0], jnp.float32),
  }
  if axis_name is not None:
    grads = lax.pmean(grads, axis_name)
    new_model_state = lax.pmean(new_model_state, axis_name)
    metrics = {
      "loss": lax.pmean(metrics["loss"], axis_name),
      **{k: lax.psum(metrics[k], axis_name) for k in ("top1", "top5", "count")},
    }
  new_state = state.apply_gradients(grads=grads, model_state=flax.core.unfreeze(new_model_state))
  metrics["grad_norm"] = optax.tree.norm(grads)
  lr = _learning_rate(new_state.opt_state)
  if lr is not None:
    metrics["learning_rate"] = jnp.asarray(lr, jnp.float32)
  return new_state, metrics


def eval_step(state: TrainState, batch, *, axis_name: Optional[str] = None, preprocess: Optional[Callable] = None):
  """Sums of loss, top-1, top-5 and examples over the batch, weighted by `batch['mask']` when present.

  Padded examples (mask 0) count nothing, so an evaluation padded to a fixed batch shape drops no example
  and counts none twice. An `image` of shape [B, V, H, W, C] holds V views per example (e.g. the paper's
  10 crops, section 4.1): their softmax outputs are averaged, and the log of the average is scored.

  Args:
    state: the TrainState.
    batch: dict with 'image' (after `preprocess`: [B, H, W, C], or [B, V, H, W, C] for V views),
      'label' (int32 [B]) and optionally 'mask' (float [B]: 1 for an example, 0 for padding).
    axis_name: the named device axis to sum over, or None on one device and under jit over a mesh.
    preprocess: optional deterministic `preprocess(batch) -> batch` run on the device first.

  Returns:
    dict of float32 scalars, summed over the batch and, under `axis_name`, over devices: `loss_sum`,
    `top1` and `top5` (correct counts) and `count` (the mask's sum). Divide by `count` for means.
  """
  if preprocess is not None:
    batch = preprocess(batch)
  images, labels = batch["image"], batch["label"]
  mask = batch.get("mask", jnp.ones(labels.shape, jnp.float32)).astype(jnp.float32)
  variables = {"params": state.params, **state.model_state}
  if images.ndim == 5:
    views = images.shape[1]
    logits = state.apply_fn(variables, images.reshape((-1,) + images.shape[2:]), train=False)
    probs = jax.nn.softmax(logits.astype(jnp.float32)).reshape(labels.shape[0], views, -1).mean(axis=1)
    scores = jnp.log(probs)  # averaged probabilities as log-scores: ranking and loss both follow them
    loss = -jnp.take_along_axis(scores, labels[:, None], axis=-1)[:, 0]
  else:
    scores = state.apply_fn(variables, images, train=False)
    loss = cross_entropy(scores, labels)
  metrics = {
    "loss_sum": jnp.sum(loss * mask),
    "top1": jnp.sum(correct_top_k(scores, labels, 1) * mask),
    "top5": jnp.sum(correct_top_k(scores, labels, 5) * mask),
    "count": jnp.sum(mask),
  }
  if axis_name is not None:
    metrics = lax.psum(metrics, axis_name)
  return metrics


def shard_batch(batch, num_devices: Optional[int] = None):
  """Reshapes every array of `batch` from [B, ...] to [num_devices, B / num_devices, ...] for pmap.

  Args:
    batch: a tree of arrays (numpy or jax) sharing a leading batch axis B.
    num_devices: the leading axis's size; None (or 0) takes `jax.local_device_count()`.

  Returns:
    The same tree, every leaf reshaped.

  Raises:
    ValueError: B is not a multiple of num_devices (the message names both numbers).
  """
  num_devices = num_devices or jax.local_device_count()

  def reshape(x):
    if x.shape[0] % num_devices:
      raise ValueError(
        f"A batch of {x.shape[0]} examples does not split evenly across {num_devices} "
        f"devices: choose a global batch size that is a multiple of {num_devices}."
      )
    return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])

  return jax.tree_util.tree_map(reshape, batch)


def local_mesh(axis_name: str = "batch", devices=None) -> Mesh:
  """A 1-D mesh over this process's devices, its axis named like the pmap axis.

  Args:
    axis_name: the mesh axis's name.
    devices: the devices in mesh order; None takes `jax.local_devices()`.

  Returns:
    A Mesh of shape (len(devices),).
  """
  return Mesh(np.array(devices if devices is not None else jax.local_devices()), (axis_name,))


def replicate(tree, axis_name: str = "batch", devices=None):
  """Places `tree` on every local device, sharded exactly as `pmap(..., out_axes=None)` returns it.

  Not needed for correctness (pmap broadcasts an unreplicated state), but a state placed this way before
  the first step has the same sharding as every later step's, so the step compiles once, not twice.

  Args:
    tree: a tree of arrays, e.g. a TrainState.
    axis_name: the name of the mesh axis (see `local_mesh`).
    devices: the devices; None takes `jax.local_devices()`.

  Returns:
    The tree with every leaf replicated (`PartitionSpec()`) over the local mesh.
  """
  return jax.device_put(tree, NamedSharding(local_mesh(axis_name, devices), PartitionSpec()))


def pmap_train_step(
  step_fn: Callable = train_step, *, axis_name: str = "batch", donate: bool = True, devices=None, **step_kwargs
):
  """`step_fn` pmapped over local devices: (state, sharded_batch, rng) -> (state, per-device metrics).

  The state goes in unreplicated (`in_axes=None`) and comes out unreplicated (`out_axes=None`).

  Args:
    step_fn: the step to map: `train_step`, or a function with its signature and `axis_name` keyword.
    axis_name: the device axis's name, passed to `step_fn`.
    donate: donate the input state's buffers to the new state (do not use the state passed in afterwards).
    devices: the devices to map over; None takes all local devices.
    **step_kwargs: further keywords of `step_fn` (preprocess, label_smoothing).

  Returns:
    A function (state, batch, rng) -> (state, metrics): `batch` has a leading device axis
    ([devices, B / devices, ...], as `shard_batch` makes it); metrics come back with a leading device axis,
    equal along it (take `[0]`).
  """
  fn = functools.partial(step_fn, axis_name=axis_name, **step_kwargs)
  return jax.pmap(
    fn,
    axis_name=axis_name,
    in_axes=(None, 0, None),
    out_axes=(None, 0),
    donate_argnums=(0,) if donate else (),
    devices=devices,
  )


def pmap_eval_step(step_fn: Callable = eval_step, *, axis_name: str = "batch", devices=None, **step_kwargs):
  """`step_fn` pmapped for evaluation: (state, sharded_batch) -> metric sums with a device axis.

  Args:
    step_fn: `eval_step`, or a function with its signature and `axis_name` keyword.
    axis_name: the device axis's name, passed to `step_fn`.
    devices: the devices to map over; None takes all local devices.
    **step_kwargs: further keywords of `step_fn` (preprocess).

  Returns:
    A function (state, batch) -> metric sums: `batch` is [devices, B / devices, ...]; every sum comes back
    [devices], equal along the axis (summed over all devices already).
  """
  fn = functools.partial(step_fn, axis_name=axis_name, **step_kwargs)
  return jax.pmap(fn, axis_name=axis_name, in_axes=(None, 0), out_axes=0, devices=devices)


def _merged_device_axis(step_fn, device_axis: bool):
  """`step_fn` with a batch of [devices, per_device, ...] (as the trainer prefetches for pmap) merged to
  [B, ...] first: a reshape of the leading sharded axis that moves no data between devices."""
  if not device_axis:
    return step_fn

  def merged(state, batch, *args, **kwargs):
    batch = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
    return step_fn(state, batch, *args, **kwargs)

  return merged


def sharded_train_step(
  step_fn: Callable = train_step,
  *,
  mesh: Optional[Mesh] = None,
  donate: bool = True,
  device_axis: bool = False,
  **step_kwargs,
):
  """`step_fn` under `jax.jit` over a data-parallel mesh, the alternative to pmap: (state, batch, rng) ->
  (state, metrics) with the batch sharded along the mesh's first axis and the state replicated.

  The step is written for one device (axis_name=None): XLA partitions it and inserts the gradient
  all-reduce itself. One rng serves the whole global batch, so dropout masks and crops are drawn per
  global batch, not per device as under pmap.

  Args:
    step_fn: `train_step`, or a function with its signature and `axis_name` keyword.
    mesh: the mesh; its first axis shards the batch. None takes `local_mesh()`.
    donate: donate the input state's buffers to the new state.
    device_axis: the batch comes as [devices, per_device, ...] (as `shard_batch` makes it for pmap) and is
      merged to [B, ...] first; False: it comes as [B, ...], B divisible by the mesh's size.
    **step_kwargs: further keywords of `step_fn` (preprocess, label_smoothing).

  Returns:
    A function (state, batch, rng) -> (state, metrics), metrics as replicated scalars.
  """
  mesh = mesh if mesh is not None else local_mesh()
  replicated = NamedSharding(mesh, PartitionSpec())
  by_example = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
  return jax.jit(
    _merged_device_axis(functools.partial(step_fn, axis_name=None, **step_kwargs), device_axis),
    in_shardings=(replicated, by_example, replicated),
    out_shardings=(replicated, replicated),
    donate_argnums=(0,) if donate else (),
  )


def sharded_eval_step(
  step_fn: Callable = eval_step, *, mesh: Optional[Mesh] = None, device_axis: bool = False, **step_kwargs
):
  """`step_fn` for evaluation under `jax.jit` over a data-parallel mesh: (state, batch) -> metric sums.

  Args:
    step_fn: `eval_step`, or a function with its signature and `axis_name` keyword.
    mesh: the mesh; its first axis shards the batch. None takes `local_mesh()`.
    device_axis: the batch comes as [devices, per_device, ...] and is merged to [B, ...] first.
    **step_kwargs: further keywords of `step_fn` (preprocess).

  Returns:
    A function (state, batch) -> dict of replicated scalar sums over the whole batch.
  """
  mesh = mesh if mesh is not None else local_mesh()
  replicated = NamedSharding(mesh, PartitionSpec())
  by_example = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
  return jax.jit(
    _merged_device_axis(functools.partial(step_fn, axis_name=None, **step_kwargs), device_axis),
    in_shardings=(replicated, by_example),
    out_shardings=replicated,
  )


# The trainer's two forms of the same data-parallel step (config key `step_impl`): pmap over the local
# devices, or jit over a mesh of them. Both take the loop's [devices, per_device, ...] batches.
STEP_IMPLS = ("pmap", "jit_sharded")


def trainer_steps(impl: str, *, train_preprocess=None, eval_preprocessors=None, **train_kwargs):
  """The trainer's train step and evaluation steps in the form `impl`, for batches with a device axis.

  Args:
    impl: one of STEP_IMPLS: 'pmap' (`pmap_train_step`) or 'jit_sharded' (`sharded_train_step`).
    train_preprocess: the train step's `preprocess(batch, rng)`, or None.
    eval_preprocessors: dict view name -> that view's `preprocess(batch)`; None: no evaluation steps.
    **train_kwargs: further keywords of the train step's wrapper and of `train_step` (donate,
      label_smoothing).

  Returns:
    (train_step, {view: eval_step}), all taking [devices, per_device, ...] batches.

  Raises:
    ValueError: `impl` is not one of STEP_IMPLS.
  """
  eval_preprocessors = eval_preprocessors or {}
  if impl == "pmap":
    train = pmap_train_step(preprocess=train_preprocess, **train_kwargs)
    evals = {view: pmap_eval_step(preprocess=p) for view, p in eval_preprocessors.items()}
  elif impl == "jit_sharded":
    train = sharded_train_step(device_axis=True, preprocess=train_preprocess, **train_kwargs)
    evals = {view: sharded_eval_step(device_axis=True, preprocess=p) for view, p in eval_preprocessors.items()}
  else:
    raise ValueError(f"Unknown step impl {impl!r}: expected one of {STEP_IMPLS}.")
  return train, evals


def jit_train_step(step_fn: Callable = train_step, *, donate: bool = True, **step_kwargs):
  """`step_fn` under `jax.jit` on one device: (state, batch, rng) -> (state, metrics).

  Args:
    step_fn: `train_step`, or a function with its signature and `axis_name` keyword.
    donate: donate the input state's buffers to the new state.
    **step_kwargs: further keywords of `step_fn` (preprocess, label_smoothing).

  Returns:
    The jitted step, with `axis_name=None`.
  """
  return jax.jit(functools.partial(step_fn, axis_name=None, **step_kwargs), donate_argnums=(0,) if donate else ())


def jit_eval_step(step_fn: Callable = eval_step, **step_kwargs):
  """`step_fn` under `jax.jit` on one device: (state, batch) -> metric sums.

  Args:
    step_fn: `eval_step`, or a function with its signature and `axis_name` keyword.
    **step_kwargs: further keywords of `step_fn` (preprocess).

  Returns:
    The jitted step, with `axis_name=None`.
  """
  return jax.jit(functools.partial(step_fn, axis_name=None, **step_kwargs))
