"""The study's controls (experiments/study/controls.py): which reading each set of hand-made intervals
supports, and the dropout control's table on made-up runs whose epochs are worked out by hand."""

from test_study import _fake_run, _kernels

from alexnet_jax.analysis import effects
from experiments.study import arms, controls, measures

Iv = effects.Interval  # (mean, low, high, seeds)


def test_the_lrn_reading_names_normalisation_when_the_gain_alone_does_not_help():
  no_lrn, gain_only = Iv(5.0, 3.0, 7.0, 5), Iv(4.8, 2.9, 6.7, 5)  # keeping only the gain loses it all
  reading = controls.lrn_reading(no_lrn, gain_only, gain_alone=Iv(0.2, -1.0, 1.4, 5))
  assert "the effect is the normalisation across channels, not the scale" in reading
  # The gain alone recovers the baseline: no difference without the normalisation, and better than no LRN.
  reading = controls.lrn_reading(no_lrn, Iv(0.3, -1.5, 2.1, 5), gain_alone=Iv(4.7, 2.8, 6.6, 5))
  assert "mostly one of scale" in reading and "could hide ±2.1" in reading
  assert "nothing to attribute" in controls.lrn_reading(Iv(1.0, -2.0, 4.0, 5), gain_only, Iv(0, -1, 1, 5))
  assert "do not separate" in controls.lrn_reading(no_lrn, Iv(2.5, 0.5, 4.5, 5), Iv(2.5, 0.5, 4.5, 5))


def test_the_tower_reading_tells_width_from_the_split_only_on_evidence_for_each():
  half_worse = Iv(3.0, 1.0, 5.0, 3)  # the paper's half-width one-GPU net is worse than the towers
  level, read = Iv(0.2, -0.8, 1.2, 3), controls.tower_reading  # the one-tower net: no difference
  # Width: the one-tower net also beats the half-width net, detectably.
  assert "is width, not the split" in read(half_worse, level, Iv(-2.8, -4.5, -1.1, 3))
  assert "could hide ±1.2" in read(half_worse, level, Iv(-2.8, -4.5, -1.1, 3))
  # No difference from the towers detected is not evidence for width on its own.
  assert "do not separate" in read(half_worse, level, Iv(-2.8, -6.0, 0.4, 3))
  assert "the split itself helps" in read(half_worse, Iv(1.5, 0.5, 2.5, 3), Iv(-1.5, -3.0, 0.0, 3))
  assert "the split itself costs" in read(half_worse, Iv(-1.5, -2.5, -0.5, 3), Iv(-4.5, -6.0, -3.0, 3))
  assert "no edge to attribute" in read(Iv(3.0, -1.0, 7.0, 3), level, level)
  assert "reversed" in read(Iv(-3.0, -5.0, -1.0, 3), level, level)
  assert "too few seeds" in read(half_worse, Iv(0.5, 0.5, 0.5, 1), level)


def test_the_dropout_reading_tells_a_slower_net_from_a_smaller_step_only_on_evidence_for_each():
  sooner, read = Iv(-8.0, -11.0, -5.0, 3), controls.dropout_reading  # no dropout: 8 epochs sooner
  assert "not a matter of step size" in read(sooner, Iv(-6.0, -9.0, -3.0, 3), Iv(2.0, -1.0, 5.0, 3))
  # The half step is detectably slower than the full one and no longer detectably sooner than the baseline.
  reading = read(sooner, Iv(-1.0, -4.0, 2.0, 3), Iv(7.0, 4.0, 10.0, 3))
  assert "the step size can account" in reading and "+7.00 [+4.00, +10.00]" in reading
  # The measured case: as fast as without dropout on average, but two seeds' interval includes 0.
  reading = read(sooner, Iv(-10.5, -29.56, 8.56, 2), Iv(0.0, -25.4, 25.4, 2))
  assert reading.startswith("the control does not separate the accounts") and "-10.50 [-29.56, +8.56]" in reading
  assert "no cost in epochs" in read(Iv(-2.0, -5.0, 1.0, 3), Iv(-1.0, -4.0, 2.0, 3), Iv(1.0, -2.0, 4.0, 3))
  assert "too few seeds" in read(sooner, Iv(-1.0, -1.0, -1.0, 1), Iv(1.0, 1.0, 1.0, 1))


def test_the_dropout_table_counts_epochs_to_the_baselines_quarter_mark(tmp_path):
  # 8 epochs; validation error at epoch e is top1 + slope * (8 - e). The threshold is the baseline's mean
  # at epoch 2 (a quarter): 0.70, 0.76, 0.77 -> 0.7433, reached at epochs 2, 3, 3.
  planned = {
    "baseline": ({0: 0.10, 1: 0.16, 2: 0.17}, 0.1),
    "no_dropout": ({0: 0.10, 1: 0.16, 2: 0.17}, 0.05),  # 0.45, 0.51, 0.52 at epoch 1: Δ -1, -2, -2
    "no_dropout_lr_half": ({0: 0.20, 1: 0.20, 2: 0.30}, 0.1),  # 0.70 at epochs 3, 3, 4: Δ +1, 0, +1
  }
  for name, (top1, slope) in planned.items():
    for seed, error in top1.items():
      _fake_run(tmp_path / "runs" / name / f"seed{seed}", seed, error, error - 0.1, _kernels(True), 8.0, slope)
  loaded = measures.load_all(str(tmp_path), arms.ARMS)
  lines = controls.dropout_section(loaded)
  assert "(centre) of 74.3%" in lines[2]
  # Δ -1, -2, -2: mean -1.667, sd 0.5774, t(2) = 4.3027 -> ±1.434.
  assert any(line.startswith("| no_dropout | 3 of 3 | 1.00, 1.00, 1.00 | -1.67 [-3.10, -0.23] |") for line in lines)
  # Δ +1, 0, +1: mean 0.667, the same sd -> ±1.434.
  assert any(
    line.startswith("| no_dropout_lr_half | 3 of 3 | 3.00, 3.00, 4.00 | +0.67 [-0.77, +2.10] |") for line in lines
  )
  # Against the full step: +2, +2, +3, mean 2.333 [+0.90, +3.77]: the half step alone is slower, detectably.
  assert "the step size can account" in lines[-2] and "(+2.33 [+0.90, +3.77] epochs)" in lines[-2]


def test_every_control_arm_of_the_plan_is_read_by_the_report():
  planned = {arm.name for arm in arms.ARMS if arm.what.startswith("control for")}
  assert planned == set(controls.CONTROLS) and len(planned) == 5
