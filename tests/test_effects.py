"""Seed-paired effect statistics against hand-computed values (t-table quantiles, not scipy)."""

import math

import pytest

from alexnet_jax.analysis import effects

# Two-sided 95% t quantiles from a printed t table.
T_TABLE_975 = {1: 12.706, 3: 3.182}


def test_paired_t_interval_matches_a_hand_computed_one():
  baseline = {0: 30.0, 1: 40.0, 2: 50.0, 3: 45.0}
  ablated = {0: 31.0, 1: 42.0, 2: 53.0, 3: 51.0}  # differences 1, 2, 3, 6
  interval = effects.paired_difference(baseline, ablated)
  # mean 3; sd of (1, 2, 3, 6) = sqrt(14 / 3); half width = t(0.975, 3) * sd / sqrt(4)
  half = T_TABLE_975[3] * math.sqrt(14 / 3) / 2
  assert interval.n == 4 and interval.mean == pytest.approx(3.0)
  assert interval.low == pytest.approx(3.0 - half, abs=2e-3)
  assert interval.high == pytest.approx(3.0 + half, abs=2e-3)
  assert not interval.excludes_zero()  # 3.0 - 3.44 < 0
  assert interval.largest_hidden() == pytest.approx(3.0 + half, abs=2e-3)


def test_a_constant_paired_shift_has_a_zero_width_interval_whatever_the_seeds_spread():
  baseline = {0: 30.0, 1: 40.0, 2: 50.0}
  interval = effects.paired_difference(baseline, {s: v + 2.0 for s, v in baseline.items()})
  assert (interval.mean, interval.low, interval.high, interval.n) == pytest.approx((2.0, 2.0, 2.0, 3))
  assert interval.excludes_zero()
  itself = effects.paired_difference(baseline, baseline)
  assert (itself.mean, itself.low, itself.high) == (0.0, 0.0, 0.0)


def test_only_seeds_both_configurations_have_are_paired():
  interval = effects.paired_difference({0: 10.0, 1: 20.0, 2: 30.0}, {1: 23.0, 2: 31.0, 5: 99.0})
  half = T_TABLE_975[1] * math.sqrt(2.0) / math.sqrt(2)  # t(0.975, 1) from the table; sd of (3, 1) = sqrt(2)
  assert interval.n == 2 and interval.mean == pytest.approx(2.0)  # differences 3 and 1
  assert interval.high == pytest.approx(2.0 + half, abs=1e-2)
  one = effects.paired_difference({0: 1.0}, {0: 4.0})
  assert one.n == 1 and one.mean == 3.0 and math.isnan(one.low)


def test_verdicts():
  confirmed = effects.Interval(1.5, 0.5, 2.5, 5)
  assert effects.verdict(confirmed, paper_sign=+1) == "confirmed"
  assert effects.verdict(confirmed, paper_sign=-1) == "reversed"
  assert effects.verdict(effects.Interval(1.0, -0.5, 2.5, 5), paper_sign=+1) == "not detected"
  assert effects.verdict(effects.Interval(1.0, math.nan, math.nan, 1), paper_sign=+1) == "too few seeds"
  assert effects.verdict(confirmed, paper_sign=None) == "measured"
  # Two seeds whose differences agree to the image (both -13 of 3,925) are no evidence of a direction.
  agreeing = effects.paired_difference({0: 1606 / 3925, 1: 1475 / 3925}, {0: 1593 / 3925, 1: 1462 / 3925})
  assert agreeing.n == 2 and effects.verdict(agreeing, paper_sign=+1) == "too few seeds"


def test_runs_near_chance_did_not_train():
  assert effects.did_not_train(0.909, 10) and effects.did_not_train(0.86, 10)
  assert not effects.did_not_train(0.84, 10) and not effects.did_not_train(0.49, 10)
  assert effects.did_not_train(float("nan"), 10)
  assert effects.did_not_train(0.9986, 1000) and not effects.did_not_train(0.99, 1000)
