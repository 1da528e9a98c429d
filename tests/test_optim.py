"""The optimiser against hand-written NumPy references of its formulas, and the schedules' values."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from alexnet_jax import configlib
from alexnet_jax.training import optim


def run_optax(tx, params, grads_seq):
  state = tx.init(params)
  for grads in grads_seq:
    updates, state = tx.update(grads, state, params)
    params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
  return params, state


def schedule_of(values):
  """A schedule returning values[step] (piecewise), so the references see a changing learning rate."""
  table = jnp.asarray(values, jnp.float32)
  return lambda count: table[jnp.minimum(count, len(values) - 1)]


LRS = [0.1, 0.1, 0.05, 0.05, 0.01, 0.01]


def random_problem(seed=0):
  rng = np.random.default_rng(seed)
  params = {"w": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=(4,)).astype(np.float32)}
  grads = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()} for _ in LRS]
  return params, grads


@pytest.mark.parametrize("nesterov", [False, True])
def test_coupled_is_the_papers_rule(nesterov):
  """Section 5: v <- 0.9 v - 0.0005 eps w - eps g;  w <- w + v (Nesterov: w <- w + 0.9 v_new - eps(g + wd w))."""
  params, grads = random_problem()
  tx = optim.sgd(schedule_of(LRS), momentum=0.9, nesterov=nesterov, weight_decay=5e-4, weight_decay_mode="coupled")
  got, _ = run_optax(tx, params, grads)
  for name in params:
    w = params[name].astype(np.float64)
    v = np.zeros_like(w)
    for eps, g in zip(LRS, grads):
      step = -eps * (g[name] + 5e-4 * w)
      v = 0.9 * v + step
      w = w + (0.9 * v + step if nesterov else v)
    np.testing.assert_allclose(got[name], w, rtol=1e-6, atol=1e-7)


def test_decoupled_is_sgdw():
  """m <- 0.9 m + g;  w <- w - eps (m + wd w): decay outside the momentum buffer, scaled by eps."""
  params, grads = random_problem(1)
  wd = 0.05  # large, so a decay in the wrong place shows
  tx = optim.sgd(schedule_of(LRS), momentum=0.9, weight_decay=wd, weight_decay_mode="decoupled")
  got, _ = run_optax(tx, params, grads)
  for name in params:
    w = params[name].astype(np.float64)
    m = np.zeros_like(w)
    for eps, g in zip(LRS, grads):
      m = 0.9 * m + g[name]
      w = w - eps * (m + wd * w)
    np.testing.assert_allclose(got[name], w, rtol=1e-6, atol=1e-7)


def test_modes_differ():
  params, grads = random_problem(2)
  a, _ = run_optax(optim.sgd(schedule_of(LRS), weight_decay=0.05, weight_decay_mode="coupled"), params, grads)
  b, _ = run_optax(optim.sgd(schedule_of(LRS), weight_decay=0.05, weight_decay_mode="decoupled"), params, grads)
  assert not np.allclose(a["w"], b["w"])


def test_decoupled_decay_matches_the_papers_strength_at_wd_over_one_minus_momentum():
  """With no gradient, the paper's coupled rule shrinks weights by lr * wd / (1 - momentum) per step once
  its momentum has built up (the decay accumulates in the buffer); decoupled SGDW shrinks them by lr * wd.
  So the paper's 5e-4 is decoupled 5e-3, and decoupled 5e-4 decays 10x less: what the docs say."""
  lr, wd, momentum, steps = 0.1, 0.01, 0.9, 100
  zero = [{"w": np.zeros(4, np.float32)}] * steps
  start = {"w": np.ones(4, np.float32)}
  paper, _ = run_optax(optim.sgd(lambda c: lr, weight_decay=wd, weight_decay_mode="coupled"), start, zero)
  same_wd, _ = run_optax(optim.sgd(lambda c: lr, weight_decay=wd, weight_decay_mode="decoupled"), start, zero)
  scaled, _ = run_optax(
    optim.sgd(lambda c: lr, weight_decay=wd / (1 - momentum), weight_decay_mode="decoupled"), start, zero
  )
  # Hand-computed: decoupled is exactly (1 - lr wd')^steps; coupled lags it by the ~1/(1 - momentum) steps
  # its buffer takes to fill.
  np.testing.assert_allclose(same_wd["w"], (1 - lr * wd) ** steps, rtol=1e-5)  # 0.905
  np.testing.assert_allclose(scaled["w"], (1 - lr * wd / (1 - momentum)) ** steps, rtol=1e-5)  # 0.366
  assert abs(float(paper["w"][0]) - float(scaled["w"][0])) < 0.05 * float(scaled["w"][0])
  assert float(same_wd["w"][0]) > 2 * float(paper["w"][0])


def test_mask_keeps_biases_out_of_decay():
  params = {"kernel": np.ones((2, 2), np.float32), "bias": np.ones((2,), np.float32)}
  zeros = {k: np.zeros_like(v) for k, v in params.items()}
  for mode in optim.WEIGHT_DECAY_MODES:
    tx = optim.sgd(
      lambda c: 0.1, momentum=0.0, weight_decay=0.5, weight_decay_mode=mode, mask=optim.decay_mask("kernels")
    )
    got, _ = run_optax(tx, params, [zeros])
    np.testing.assert_allclose(got["kernel"], 1 - 0.1 * 0.5)  # decayed
    np.testing.assert_allclose(got["bias"], 1.0)  # untouched
    got_all, _ = run_optax(
      optim.sgd(lambda c: 0.1, momentum=0.0, weight_decay=0.5, weight_decay_mode=mode, mask=optim.decay_mask("all")),
      params,
      [zeros],
    )
    np.testing.assert_allclose(got_all["bias"], 0.95)


def test_lr_factor_scales_the_update_and_is_recorded():
  params, grads = random_problem(3)
  tx = optim.sgd(lambda c: 0.1, momentum=0.0, weight_decay=0.0)
  state = optim.with_learning_rate_factor(tx.init(params), 0.1)
  assert optim.learning_rate_factor(state) == pytest.approx(0.1)
  updates, state = tx.update(grads[0], state, params)
  np.testing.assert_allclose(updates["w"], -0.01 * grads[0]["w"], rtol=1e-6)
  assert float(
    jax.tree_util.tree_leaves([s.learning_rate for s in state if isinstance(s, optim.ScheduledLRState)])[0]
  ) == pytest.approx(0.01)


def optim_config(**overrides):
  config = ml_collections.ConfigDict(
    dict(
      learning_rate=0.01,
      base_batch_size=None,
      momentum=0.9,
      nesterov=False,
      weight_decay=5e-4,
      weight_decay_mode="decoupled",
      weight_decay_mask="all",
      schedule="plateau",
      warmup_epochs=0.0,
      step_epochs=(30, 60, 90),
      step_gamma=0.1,
      cosine_final_fraction=0.0,
    )
  )
  config.update(overrides)
  return config


def schedule(steps_per_epoch=10, num_epochs=100, batch_size=128, **overrides):
  return optim.create_schedule(
    optim_config(**overrides),
    batch_size=batch_size,
    steps_per_epoch=steps_per_epoch,
    total_steps=num_epochs * steps_per_epoch,
  )


def test_step_schedule_divides_by_ten_at_the_given_epochs():
  s = schedule(schedule="step")
  assert [float(s(i)) for i in (0, 299, 300, 599, 600, 899, 900)] == pytest.approx(
    [0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4, 1e-5]
  )


def test_cosine_schedule_and_warmup():
  s = schedule(schedule="cosine", warmup_epochs=5)
  assert float(s(0)) == 0.0
  assert float(s(25)) == pytest.approx(0.005)  # halfway through the 50-step warmup
  assert float(s(50)) == pytest.approx(0.01)
  # cosine over the remaining 950 steps: halfway -> half the peak, end -> 0
  assert float(s(50 + 475)) == pytest.approx(0.005, rel=1e-4)
  assert float(s(1000)) == pytest.approx(0.0, abs=1e-9)


def test_step_schedule_with_warmup_keeps_boundaries_in_epochs():
  s = schedule(schedule="step", warmup_epochs=2)
  assert float(s(10)) == pytest.approx(0.005)
  assert float(s(299)) == pytest.approx(0.01) and float(s(300)) == pytest.approx(0.001)


def test_linear_scaling_with_batch_size():
  s = schedule(schedule="constant", base_batch_size=256, learning_rate=0.1, batch_size=1024)
  assert float(s(0)) == pytest.approx(0.4)
  assert float(schedule(schedule="plateau")(12345)) == pytest.approx(0.01)


def test_unknown_schedule_and_mode_are_clear_errors():
  with pytest.raises(configlib.ConfigError, match=r"optim.schedule='linear' is not one of \['plateau', 'step', "):
    schedule(schedule="linear")
  with pytest.raises(ValueError, match="Unknown weight_decay_mode 'l2'"):
    optim.sgd(lambda c: 0.1, weight_decay_mode="l2")


@pytest.mark.parametrize(
  "key,value",
  [
    ("optim.schedule", "linear"),
    ("optim.weight_decay_mode", "l2"),
    ("optim.weight_decay_mask", "none"),
    ("on_nonfinite", "x"),
  ],
)
def test_a_choice_outside_its_options_names_them_and_the_flag(key, value):
  config = ml_collections.ConfigDict(
    {
      "optim": {"schedule": "plateau", "weight_decay_mode": "coupled", "weight_decay_mask": "all"},
      "on_nonfinite": "stop",
    }
  )
  optim.check_choices(config)  # the defaults pass
  section, _, name = key.rpartition(".")
  (config[section] if section else config)[name] = value
  allowed = optim.CHOICES[key]
  with pytest.raises(configlib.ConfigError) as error:
    optim.check_choices(config)
  assert str(error.value) == (
    f"{key}={value!r} is not one of {list(allowed)}: set --config.{key}={allowed[0]} (or another of them)."
  )


def test_plateau_cuts_exactly_after_patience_stalled_evaluations():
  state = optim.PlateauState()
  values = [50.0, 40.0, 40.5, 41.0, 40.0, 39.0, 39.5, 39.2, 39.1]
  factors = []
  for v in values:
    state = optim.plateau_update(state, v, patience=3)
    factors.append(state.factor)
  # 40.5, 41.0, 40.0 do not beat 40.0: the third stall (index 4) cuts; 39.0 improves; 39.5, 39.2, 39.1 stall.
  assert factors == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01])
  assert state.cuts == 2 and state.best == 39.0


def test_plateau_cooldown_minimum_threshold_and_roundtrip():
  state = optim.PlateauState()
  factors = []
  for v in [10.0] + [10.0] * 8:
    state = optim.plateau_update(state, v, patience=2, cooldown=2, min_factor=0.01)
    factors.append(state.factor)
  # stalls at 1, 2 -> cut; two cooldown evals (3, 4) don't count; stalls 5, 6 -> cut to the minimum 0.01;
  # never below the minimum afterwards.
  assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01])
  assert optim.PlateauState.from_dict(state.to_dict()) == state
  # A relative threshold: 9.99 is not a 1% improvement over 10.
  s = optim.plateau_update(optim.PlateauState(best=10.0), 9.99, patience=1, threshold=0.01)
  assert s.factor == pytest.approx(0.1)
  s = optim.plateau_update(optim.PlateauState(best=10.0), 9.8, patience=1, threshold=0.01)
  assert s.factor == 1.0 and s.best == 9.8
  # 'max' mode (e.g. accuracy)
  s = optim.plateau_update(optim.PlateauState(best=0.5), 0.4, patience=1, mode="max")
  assert s.factor == pytest.approx(0.1) and s.best == 0.5


def test_create_optimizer_from_config():
  config = ml_collections.ConfigDict(
    dict(batch_size=128, num_epochs=90, num_train_steps=-1, optim=optim_config(schedule="step"))
  )
  tx, sched = optim.create_optimizer(config, steps_per_epoch=100)
  assert float(sched(3000)) == pytest.approx(0.001)
  params = {"w": jnp.ones((2, 2))}
  state = tx.init(params)
  assert optim.learning_rate_factor(state) == 1.0
  assert math.isclose(float(sched(0)), 0.01, rel_tol=1e-6)


def test_a_cosine_schedule_ends_at_num_train_steps_when_it_is_set():
  """num_train_steps overrides num_epochs for the run, and so for the schedule: the cosine reaches its
  end at step 500 (it decayed over 90 epochs x 100 steps before)."""
  config = ml_collections.ConfigDict(
    dict(batch_size=128, num_epochs=90, num_train_steps=500, optim=optim_config(schedule="cosine"))
  )
  _, sched = optim.create_optimizer(config, steps_per_epoch=100)
  assert float(sched(250)) == pytest.approx(0.005, rel=1e-5)  # half way: (1 + cos(pi / 2)) / 2 of 0.01
  assert float(sched(500)) == pytest.approx(0.0, abs=1e-9)
  config.num_train_steps = -1
  assert optim.total_steps(config, 100) == 9000


@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
@pytest.mark.parametrize("mask", ["all", "kernels"])
def test_create_optimizer_wires_the_decay_mode_and_mask_from_the_config(mode, mask):
  """The configured optimiser, two steps, against the update rule of its mode written out by hand; with
  mask 'kernels' the bias follows plain SGD with momentum (no decay)."""
  wd, lr, mu = 0.05, 0.1, 0.9  # a large decay, so a decay in the wrong place (or none) shows
  config = ml_collections.ConfigDict(
    dict(
      batch_size=128,
      num_epochs=1,
      num_train_steps=-1,
      optim=optim_config(
        schedule="constant", learning_rate=lr, weight_decay=wd, weight_decay_mode=mode, weight_decay_mask=mask
      ),
    )
  )
  tx, _ = optim.create_optimizer(config, steps_per_epoch=10)
  params, grads = random_problem(2)
  got, _ = run_optax(tx, params, grads[:2])
  for name in params:
    decay = wd if (mask == "all" or params[name].ndim > 1) else 0.0
    w = params[name].astype(np.float64)
    buffer = np.zeros_like(w)
    for g in grads[:2]:
      if mode == "coupled":  # section 5: v <- mu v - lr wd w - lr g; w <- w + v
        buffer = mu * buffer - lr * decay * w - lr * g[name]
        w = w + buffer
      else:  # SGDW: m <- mu m + g; w <- w - lr (m + wd w)
        buffer = mu * buffer + g[name]
        w = w - lr * (buffer + decay * w)
    np.testing.assert_allclose(got[name], w, rtol=1e-5, atol=1e-7)


def test_plateau_cuts_stop_at_the_floor_even_where_the_factor_misses_it_by_rounding():
  """1e-4 / 0.01 = 0.01 as the floor, and 0.1 * 0.1 = 0.010000000000000002: two cuts reach it, a third
  stall is no cut (it counted as one and logged a plateau that changed nothing)."""
  state = optim.PlateauState()
  for value in (1.0, 1.0, 1.0, 1.0, 1.0):
    state = optim.plateau_update(state, value, patience=1, min_factor=1e-4 / 0.01)
  assert state.cuts == 2 and state.factor == pytest.approx(0.01)


def test_skip_guard_drops_non_finite_updates_and_counts_them_in_a_row():
  """on_nonfinite=skip: a NaN gradient leaves the parameters and the momentum as they were (the update is
  skipped, not applied late), however many come in a row; a finite one is the plain update; the count
  restarts after it. 'stop' leaves the optimiser unwrapped."""
  params, grads = random_problem()
  plain = optim.sgd(lambda c: 0.1, weight_decay_mode="coupled")
  guarded = optim.guard_nonfinite(plain, "skip")
  nan = {k: np.full_like(v, np.nan) for k, v in params.items()}
  expected, _ = run_optax(plain, params, grads[:1])
  got, state = run_optax(guarded, params, [nan] * 12)
  for k in params:
    np.testing.assert_array_equal(got[k], params[k])
  assert optim.skipped_in_a_row(state) == 12
  got, state = run_optax(guarded, params, [nan] * 3 + grads[:1])
  for k in params:
    np.testing.assert_allclose(got[k], expected[k], rtol=1e-6)
  assert optim.skipped_in_a_row(state) == 0 and optim.learning_rate_factor(state) == 1.0
  assert optim.guard_nonfinite(plain, "stop") is plain
  with pytest.raises(ValueError, match="Unknown on_nonfinite 'ignore'"):
    optim.guard_nonfinite(plain, "ignore")
