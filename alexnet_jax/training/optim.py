"""The optimiser: SGD with momentum and weight decay (Krizhevsky et al., 2012, section 5), and LR schedules.

Two weight-decay modes, both with momentum 0.9 and decay 0.0005 by default (section 5):

  coupled     the paper's rule, exactly:  v <- 0.9 v - 0.0005 eps w - eps dL/dw;  w <- w + v.
              Decay is part of the gradient and the learning rate eps multiplies it *inside* the momentum
              buffer, so a cut in eps acts on new gradients only, as in the paper.
  decoupled   SGDW (Loshchilov & Hutter, 2019), the default: m <- 0.9 m + dL/dw;  w <- w - eps (m + wd w).
              Decay acts on the weights directly, outside the momentum buffer, scaled by the schedule (as
              optax.adamw does). For the same wd it decays ~1/(1 - momentum) = 10x less per step than the
              coupled rule, whose momentum accumulates the decay term too.

Schedules for eps: 'plateau' (the paper: divide by 10 when the validation error stops improving, driven by
evaluation results through `plateau_update`), 'step' (divide by 10 at given epochs, e.g. every 30 as in
torchvision), 'cosine' and 'constant'; each with optional linear warmup and optional linear scaling with the
batch size (Goyal et al., 2017). The plateau factor lives in the optimiser state (`lr_factor`), so it is
checkpointed with it; the plateau bookkeeping (`PlateauState`) is a small host-side value saved beside it.
"""

import dataclasses
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from alexnet_jax import configlib

# Section 5: "batch size of 128 examples, momentum of 0.9, and weight decay of 0.0005";
# "The learning rate was initialized at 0.01 ... divide the learning rate by 10 when the validation error
# rate stopped improving with the current learning rate ... reduced three times prior to termination."
PAPER_BATCH_SIZE = 128
PAPER_MOMENTUM = 0.9
PAPER_WEIGHT_DECAY = 5e-4
PAPER_LEARNING_RATE = 0.01
PAPER_LR_CUT = 0.1

WEIGHT_DECAY_MODES = ("decoupled", "coupled")
WEIGHT_DECAY_MASKS = ("all", "kernels")
SCHEDULES = ("plateau", "step", "cosine", "constant")
# What a non-finite gradient does: stop the run, or skip the update (the state is left as it was). A run
# that skips this many updates in a row has diverged, not met a bad batch: it stops too.
ON_NONFINITE = ("stop", "skip")
MAX_SKIPPED_IN_A_ROW = 10
# The config keys that name one of a few options, and the options.
CHOICES = {
  "optim.schedule": SCHEDULES,
  "optim.weight_decay_mode": WEIGHT_DECAY_MODES,
  "optim.weight_decay_mask": WEIGHT_DECAY_MASKS,
  "on_nonfinite": ON_NONFINITE,
}


def unknown_choice(key: str, value, allowed) -> configlib.ConfigError:
  """The error for config key `key` set to `value`, none of `allowed`: it names them and the flag to set."""
  return configlib.ConfigError(
    f"{key}={value!r} is not one of {list(allowed)}: set --config.{key}={allowed[0]} (or another of them)."
  )


def check_choices(config) -> None:
  """Checks the optimiser's choices (CHOICES) before anything runs.

  Args:
    config: the run's config (its `optim` section and `on_nonfinite`).

  Raises:
    configlib.ConfigError: a key whose value is none of its options, naming them and the flag to set.
  """
  for key, allowed in CHOICES.items():
    section, _, name = key.rpartition(".")
    value = (config[section] if section else config)[name]
    if value not in allowed:
      raise unknown_choice(key, value, allowed)


class ScheduledLRState(NamedTuple):
  """State of `scale_by_scheduled_lr`: the step, the host-set factor, and the last rate (for logging)."""

  count: jax.Array
  lr_factor: jax.Array
  learning_rate: jax.Array


def scale_by_scheduled_lr(schedule) -> optax.GradientTransformation:
  """The learning-rate step of `sgd`: updates times -schedule(step) * lr_factor.

  Args:
    schedule: step -> learning rate (e.g. `create_schedule`'s).

  Returns:
    An optax transformation whose state (ScheduledLRState) holds the step, the factor the host sets
    (plateau cuts, `with_learning_rate_factor`) and the last rate used (for logging).
  """

  def init(params):
    del params
    return ScheduledLRState(jnp.zeros([], jnp.int32), jnp.ones([], jnp.float32), jnp.asarray(schedule(0), jnp.float32))

  def update(updates, state, params=None):
    del params
    lr = jnp.asarray(schedule(state.count), jnp.float32) * state.lr_factor
    updates = jax.tree_util.tree_map(lambda u: (-lr * u).astype(u.dtype), updates)
    return updates, ScheduledLRState(optax.safe_increment(state.count), state.lr_factor, lr)

  return optax.GradientTransformation(init, update)


def decay_mask(mode: str):
  """Which parameters weight decay applies to.

  Args:
    mode: 'all' (every parameter; section 5 writes its rule for a weight w and does not exempt biases) or
      'kernels' (only arrays with ndim > 1: no biases, no normalisation scales; Caffe's AlexNet and the
      common modern choice).

  Returns:
    A mask for `optax.add_decayed_weights`: None for 'all', else params -> a tree of bools.

  Raises:
    ValueError: an unknown mode.
  """
  if mode == "all":
    return None
  if mode == "kernels":
    return lambda params: jax.tree_util.tree_map(lambda p: p.ndim > 1, params)
  raise ValueError(f"Unknown weight-decay mask {mode!r}: expected one of {WEIGHT_DECAY_MASKS}.")


def sgd(
  schedule,
  *,
  momentum=PAPER_MOMENTUM,
  nesterov=False,
  weight_decay=PAPER_WEIGHT_DECAY,
  weight_decay_mode="decoupled",
  mask=None,
) -> optax.GradientTransformation:
  """SGD with momentum and weight decay (see the module docstring for the two modes' formulas).

  Args:
    schedule: step -> learning rate.
    momentum: the momentum (the paper's 0.9).
    nesterov: Nesterov momentum instead of the paper's heavy ball.
    weight_decay: the decay (the paper's 0.0005).
    weight_decay_mode: 'decoupled' (SGDW) or 'coupled' (the paper's rule, exactly).
    mask: which parameters decay (`decay_mask`); None: all.

  Returns:
    The optax transformation; its updates are added to the parameters.

  Raises:
    ValueError: an unknown weight_decay_mode.
  """
  if weight_decay_mode == "coupled":
    # v <- momentum v - eps (g + wd w): decay and eps applied before the momentum trace.
    return optax.chain(
      optax.add_decayed_weights(weight_decay, mask),
      scale_by_scheduled_lr(schedule),
      optax.trace(decay=momentum, nesterov=nesterov),
    )
  if weight_decay_mode == "decoupled":
    # m <- momentum m + g; update = -eps (m + wd w).
    return optax.chain(
      optax.trace(decay=momentum, nesterov=nesterov),
      optax.add_decayed_weights(weight_decay, mask),
      scale_by_scheduled_lr(schedule),
    )
  raise ValueError(f"Unknown weight_decay_mode {weight_decay_mode!r}: expected one of {WEIGHT_DECAY_MODES}.")


def base_learning_rate(optim_config, batch_size: int) -> float:
  """The peak learning rate of a run.

  Args:
    optim_config: `config.optim` (learning_rate, and base_batch_size for linear scaling).
    batch_size: the run's global batch size.

  Returns:
    learning_rate, times batch_size / base_batch_size when base_batch_size is set.
  """
  lr = float(optim_config.learning_rate)
  base = optim_config.get("base_batch_size")
  return lr * batch_size / base if base else lr


def total_steps(config, steps_per_epoch: int) -> int:
  """The run's length in steps.

  Args:
    config: the run's config (num_train_steps, num_epochs).
    steps_per_epoch: steps in one pass over the training split.

  Returns:
    `num_train_steps` where set (> 0), else the steps of `num_epochs` epochs (at least 1).
  """
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(1, int(math.ceil(float(config.num_epochs) * steps_per_epoch)))


def create_schedule(optim_config, *, batch_size: int, steps_per_epoch: int, total_steps: int):
  """The learning-rate schedule of a run (before any plateau factor).

  Args:
    optim_config: `config.optim`: schedule ('plateau', 'step', 'cosine' or 'constant'), learning_rate,
      warmup_epochs and the chosen schedule's settings.
    batch_size: the global batch size (for `base_learning_rate`).
    steps_per_epoch: steps in one epoch (epochs in the config become steps).
    total_steps: the run's length (the cosine schedule ends there).

  Returns:
    step -> learning rate.

  Raises:
    configlib.ConfigError: an unknown schedule (the message names the allowed ones and the flag).
  """
  lr = base_learning_rate(optim_config, batch_size)
  warmup_steps = int(round(float(optim_config.get("warmup_epochs", 0.0)) * steps_per_epoch))
  total_steps = max(1, int(total_steps))
  kind = optim_config.schedule
  if kind in ("plateau", "constant"):
    main = optax.constant_schedule(lr)
  elif kind == "step":
    gamma = float(optim_config.get("step_gamma", PAPER_LR_CUT))
    boundaries = {
      int(round(e * steps_per_epoch)) - warmup_steps: gamma
      for e in optim_config.step_epochs
      if int(round(e * steps_per_epoch)) > warmup_steps
    }
    main = optax.piecewise_constant_schedule(lr, boundaries)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(
      lr, max(1, total_steps - warmup_steps), alpha=float(optim_config.get("cosine_final_fraction", 0.0))
    )
  else:
    raise unknown_choice("optim.schedule", kind, SCHEDULES)
  if warmup_steps <= 0:
    return main
  warmup = optax.linear_schedule(0.0, lr, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def create_optimizer(config, steps_per_epoch: int):
  """The run's optimiser, as `config` describes it.

  Args:
    config: the run's config (`optim`, `batch_size`, and the run's length: `total_steps`).
    steps_per_epoch: steps in one epoch.

  Returns:
    (the optax transformation `sgd` builds, its learning-rate schedule).

  Raises:
    configlib.ConfigError: an unknown schedule.
    ValueError: an unknown weight_decay_mode or weight_decay_mask.
  """
  optim_config = config.optim
  schedule = create_schedule(
    optim_config,
    batch_size=int(config.batch_size),
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps(config, steps_per_epoch),
  )
  tx = sgd(
    schedule,
    momentum=float(optim_config.momentum),
    nesterov=bool(optim_config.nesterov),
    weight_decay=float(optim_config.weight_decay),
    weight_decay_mode=optim_config.weight_decay_mode,
    mask=decay_mask(optim_config.weight_decay_mask),
  )
  return tx, schedule


def guard_nonfinite(tx: optax.GradientTransformation, on_nonfinite: str) -> optax.GradientTransformation:
  """The optimiser with a rule for non-finite gradients.

  Args:
    tx: the optimiser.
    on_nonfinite: 'stop' (`tx` itself: the loop checks the loss) or 'skip' (drop every update whose
      gradient is not finite, by optax.apply_if_finite, never giving up: the loop stops after
      MAX_SKIPPED_IN_A_ROW in a row).

  Returns:
    The optax transformation.

  Raises:
    ValueError: an unknown on_nonfinite.
  """
  if on_nonfinite == "stop":
    return tx
  if on_nonfinite == "skip":
    return optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1)
  raise ValueError(f"Unknown on_nonfinite {on_nonfinite!r}: expected one of {ON_NONFINITE}.")


def skipped_in_a_row(opt_state) -> int:
  """How many updates in a row a 'skip' guard has dropped (0 without a guard)."""
  count = optax.tree.get(opt_state, "notfinite_count", 0)
  return int(count)


def learning_rate_factor(opt_state) -> Optional[float]:
  """The plateau factor stored in an optimiser state built by `sgd` (None if there is none)."""
  factor = optax.tree.get(opt_state, "lr_factor")
  return None if factor is None else float(factor)


def with_learning_rate_factor(opt_state, factor: float):
  """A copy of `opt_state` with its plateau factor replaced (the update reads it at the next step)."""
  return optax.tree.set(opt_state, lr_factor=jnp.asarray(factor, jnp.float32))


@dataclasses.dataclass(frozen=True)
class PlateauState:
  """Bookkeeping of the paper's plateau rule; a plain value that round-trips through `asdict`/JSON."""

  best: float = math.inf
  bad_evals: int = 0
  cooldown_left: int = 0
  factor: float = 1.0
  cuts: int = 0

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "PlateauState":
    return cls(**d)


def plateau_update(
  state: PlateauState,
  value: float,
  *,
  patience: int,
  cut: float = PAPER_LR_CUT,
  cooldown: int = 0,
  min_factor: float = 0.0,
  threshold: float = 0.0,
  mode: str = "min",
) -> PlateauState:
  """One evaluation's effect on the plateau rule (section 5: "divide the learning rate by 10 when the
  validation error rate stopped improving").

  A value improves when it beats the best by more than `threshold` (relative). After `patience`
  consecutive evaluations without improvement the factor is multiplied by `cut` (never below
  `min_factor`), the count restarts, and the next `cooldown` evaluations cannot count as stalls.

  Args:
    state: the rule's state so far.
    value: the evaluation's result.
    patience: evaluations without improvement before a cut.
    cut: the factor's multiplier at a cut (the paper's 0.1).
    cooldown: evaluations after a cut that cannot count as stalls.
    min_factor: the factor's floor.
    threshold: the relative improvement that counts.
    mode: 'min' (lower values are better, as errors) or 'max'.

  Returns:
    The new PlateauState.

  Raises:
    ValueError: an unknown mode.
  """
  if mode not in ("min", "max"):
    raise ValueError(f"Unknown plateau mode {mode!r}: expected 'min' or 'max'.")
  signed, best = (value, state.best) if mode == "min" else (-value, -state.best)
  improved = signed < best - threshold * abs(best) if math.isfinite(best) else True
  new_best = value if improved else state.best
  bad = 0 if improved else state.bad_evals + 1
  cooldown_left = state.cooldown_left
  if cooldown_left > 0:
    cooldown_left -= 1
    bad = 0
  factor, cuts = state.factor, state.cuts
  cut_to = max(factor * cut, min_factor)
  # A cut must lower the factor: at the floor (which 0.1 * 0.1 misses by a rounding error) none counts.
  if bad >= patience and cut_to < factor * (1 - 1e-6):
    factor, cuts, bad, cooldown_left = cut_to, cuts + 1, 0, cooldown
  return PlateauState(new_best, bad, cooldown_left, factor, cuts)


def apply_plateau(plateau: PlateauState, opt_state, value: float, **rule):
  """One evaluation through the plateau rule; the rule's bookkeeping and the factor the update reads
  change together, here.

  Args:
    plateau: the rule's state so far.
    opt_state: the optimiser's state (built by `sgd`).
    value: the evaluation's result (e.g. the validation error).
    **rule: the settings of `plateau_update` (`plateau_rule`).

  Returns:
    (the new PlateauState, opt_state with the rule's factor in it).
  """
  new = plateau_update(plateau, value, **rule)
  if new.factor != plateau.factor:
    opt_state = with_learning_rate_factor(opt_state, new.factor)
  return new, opt_state


def plateau_rule(optim_config, batch_size: int) -> dict:
  """The plateau rule's settings.

  Args:
    optim_config: `config.optim` (plateau_patience, plateau_cut, plateau_cooldown, plateau_min_lr,
      plateau_threshold).
    batch_size: the global batch size (plateau_min_lr becomes a factor of `base_learning_rate`).

  Returns:
    The keyword arguments of `plateau_update` / `apply_plateau`.
  """
  o = optim_config
  return dict(
    patience=o.plateau_patience,
    cut=o.plateau_cut,
    cooldown=o.plateau_cooldown,
    min_factor=o.plateau_min_lr / base_learning_rate(o, batch_size),
    threshold=o.plateau_threshold,
  )
