"""The study's controls (experiments/study/controls.py): which reading each set of hand-made intervals
supports, and the dropout control's table on made-up runs whose epochs are worked out by hand."""

import json
import shutil

from test_study import _fake_run, _kernels

from alexnet_jax.analysis import effects
from experiments.study import arms, controls, lrn, measures, recipe

Iv = effects.Interval  # (mean, low, high, seeds)


def test_the_lrn_reading_names_normalisation_when_the_gain_alone_does_not_help():
  no_lrn, gain_only = Iv(5.0, 3.0, 7.0, 5), Iv(4.8, 2.9, 6.7, 5)  # keeping only the gain loses it all
  reading = lrn.lrn_reading(no_lrn, gain_only, gain_alone=Iv(0.2, -1.0, 1.4, 5))
  assert "the effect is the normalisation across channels, not the scale" in reading
  # The gain alone recovers the baseline: no difference without the normalisation, and better than no LRN.
  reading = lrn.lrn_reading(no_lrn, Iv(0.3, -1.5, 2.1, 5), gain_alone=Iv(4.7, 2.8, 6.6, 5))
  assert "mostly one of scale" in reading and "could hide ±2.1" in reading
  assert "nothing to attribute" in lrn.lrn_reading(Iv(1.0, -2.0, 4.0, 5), gain_only, Iv(0, -1, 1, 5))
  assert "do not separate" in lrn.lrn_reading(no_lrn, Iv(2.5, 0.5, 4.5, 5), Iv(2.5, 0.5, 4.5, 5))


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
  assert planned == set(controls.CONTROLS) and len(planned) == 7


def test_the_k1_reading_holds_fails_or_splits_the_effect_by_the_declared_rule():
  no_lrn, read = Iv(2.0, 1.0, 3.0, 5), lrn.k1_reading  # removing LRN hurts, detectably
  # Worse than k = 2 and not better than no LRN: the gain reading holds.
  reading = read(no_lrn, Iv(1.9, 1.4, 2.4, 5), Iv(-0.1, -0.35, 0.15, 5))
  assert "the reading holds" in reading and "(+1.90 [+1.40, +2.40])" in reading
  # Detectably better than no LRN and not detectably worse than k = 2: the reading fails.
  reading = read(no_lrn, Iv(0.2, -0.6, 1.0, 5), Iv(-1.8, -2.5, -1.1, 5))
  assert "the gain reading fails" in reading and "could hide ±1.0" in reading
  assert "detectably better than no LRN (-1.80 [-2.50, -1.10])" in reading
  # Neither: no account is named on the absence of evidence (two wide seeds, say).
  reading = read(no_lrn, Iv(0.2, -0.6, 1.0, 2), Iv(-0.5, -1.2, 0.2, 2))
  assert "the control does not separate the gain from the normalisation (2 seeds paired)" in reading
  assert "fails" not in reading and "holds" not in reading
  # Detectably worse than k = 2 and detectably better than no LRN: part of the effect.
  assert "the gain is part of LRN's effect, not all of it" in read(
    no_lrn, Iv(1.0, 0.5, 1.5, 5), Iv(-1.0, -1.5, -0.5, 5)
  )
  # No LRN effect to account for, and too few seeds.
  assert "no effect to account for" in read(Iv(0.5, -0.5, 1.5, 5), Iv(1.0, 0.5, 1.5, 5), Iv(0.5, -0.1, 1.1, 5))
  assert "too few seeds" in read(no_lrn, Iv(1.0, 1.0, 1.0, 1), Iv(0.0, 0.0, 0.0, 1))


def test_lrn_with_k1_is_tabulated_against_the_baseline_and_no_lrn_beside_later_works_k(tmp_path):
  # Errors (points above the baseline's 30, 40, 50): no LRN +1.9, +2.0, +2.1; LRN with k = 1 +1.7, +1.9, +2.1.
  planned = {"baseline": (0.0, 0.0, 0.0), "no_lrn": (0.019, 0.020, 0.021), "lrn_k1": (0.017, 0.019, 0.021)}
  for name, extra in planned.items():
    for seed, base in enumerate((0.30, 0.40, 0.50)):
      _fake_run(tmp_path / "runs" / name / f"seed{seed}", seed, base + extra[seed], 0.1, _kernels(True))
  loaded = measures.load_all(str(tmp_path), arms.arms_of(arms.DATASETS["imagewoof"]))
  lines = lrn.lrn_section(loaded)
  # Against the baseline: 1.7, 1.9, 2.1 (mean 1.9, sd 0.2, t(2) = 4.3027: ±0.497); against no LRN: -0.2,
  # -0.1, 0 (mean -0.1, sd 0.1: ±0.248); the 10-crop and centre errors of the made-up runs are the same.
  row = (
    "| lrn_k1 | 3 of 3 | +1.90 [+1.40, +2.40] | +1.90 [+1.40, +2.40] | -0.10 [-0.35, +0.15] | -0.10 [-0.35, +0.15] |"
  )
  assert row in lines
  assert "| this study: no_lrn against lrn_k1 | 1 | +0.10 [-0.15, +0.35] / +0.10 [-0.15, +0.35] |" in lines
  assert "| this study: no_lrn against the baseline | 2 | +2.00 [+1.75, +2.25] / +2.00 [+1.75, +2.25] |" in lines
  assert any(
    line.startswith("| CaffeNet at 128 px on ImageNet (Mishkin") and "| 1 | -0.1 top-1" in line for line in lines
  )
  assert lines[-2].startswith("Reading: LRN with k = 1 is detectably worse") and lines[-2].endswith(
    "the reading holds."
  )
  # Imagewoof runs neither learning-rate control: the section names only the controls it runs.
  assert not any("no_lrn_lr_half" in line or "half the baseline's learning rate" in line for line in lines)


def test_the_departures_table_measures_the_dropout_placement_against_the_papers(tmp_path):
  """The committed runs drop fc6's and fc7's inputs (their config.json predates the key); the
  dropout_paper arm drops their outputs, as section 4.2 does: its change from the baseline, seed-paired,
  in the 10-crop error and in the validation-training gap that claims 6 and 7 read."""
  loaded = measures.load_all(str(tmp_path), arms.ARMS)
  assert "has not run yet" in recipe.dropout_evidence(loaded) and recipe.dropout_reading(loaded) == ""
  # The paper's placement: 1.0, 1.5, 1.0 points lower error; gaps of 18, 20, 22 against the baseline's 10.
  runs = ((0.30, 0.29, 0.18), (0.40, 0.385, 0.20), (0.50, 0.49, 0.22))
  for seed, (base, paper, gap) in enumerate(runs):
    _fake_run(tmp_path / "runs" / "baseline" / f"seed{seed}", seed, base, base - 0.1, _kernels(True))
    if seed < 1:
      _fake_run(tmp_path / "runs" / "dropout_paper" / f"seed{seed}", seed, paper, paper - gap, _kernels(True))
  one = recipe.dropout_evidence(measures.load_all(str(tmp_path), arms.ARMS))
  assert "one seed so far, too few to judge" in one
  for seed, (_, paper, gap) in list(enumerate(runs))[1:]:
    _fake_run(tmp_path / "runs" / "dropout_paper" / f"seed{seed}", seed, paper, paper - gap, _kernels(True))
  loaded = measures.load_all(str(tmp_path), arms.ARMS)
  # Error Δ -1.0, -1.5, -1.0: mean -1.167, sd 0.2887, t(2) = 4.3027 -> ±0.717. Gap Δ 8, 10, 12: ±4.968.
  table = recipe.departures_section(loaded)
  row = next(line for line in table if line.startswith("| dropout on the outputs"))
  # Their configs also predate `model.dropout_scaling`: inverted dropout, a departure of its own.
  scaling = next(line for line in table if line.startswith("| kept units unscaled in training, outputs halved"))
  assert "kept units doubled in training, nothing at test (inverted dropout" in scaling
  assert "on their inputs (pool5's and fc6's outputs), torchvision's placement" in row
  assert (
    "the paper's placement changes the 10-crop top-1 error by -1.17 [-1.88, -0.45] points and the "
    "validation-training gap by +10.00 [+5.03, +14.97] points (" in row
  )
  # Claim 7 against the paper's placement: no dropout's gaps of 25 against 18, 20, 22 -> Δ 7, 5, 3, ±4.968.
  for seed, (base, _, _) in enumerate(runs):
    _fake_run(tmp_path / "runs" / "no_dropout" / f"seed{seed}", seed, base + 0.01, base - 0.24, _kernels(True))
  reading = recipe.dropout_reading(measures.load_all(str(tmp_path), arms.ARMS))
  assert reading.endswith("; against it, claim 7's gap Δ is +5.0 [+0.0, +10.0] points (confirmed)")
  # A gap that does not move detectably: the reading says so, and how large a change could hide.
  for seed, paper in ((0, 0.29), (1, 0.385), (2, 0.49)):
    folder = tmp_path / "flat" / "runs" / "dropout_paper" / f"seed{seed}"
    _fake_run(folder, seed, paper, paper - 0.1 + (seed - 1) * 0.01, _kernels(True))
    shutil.copytree(
      tmp_path / "runs" / "baseline" / f"seed{seed}", tmp_path / "flat" / "runs" / "baseline" / f"seed{seed}"
    )
  flat = recipe.dropout_reading(measures.load_all(str(tmp_path / "flat"), arms.ARMS))
  assert flat.endswith("the validation-training gap by no detectable amount (±2.5)")


def test_the_departures_table_reads_the_paper_init_on_both_input_scales(tmp_path):
  """paper_init kept the study's std-scaled inputs; paper_init_raw gives N(0, 0.01) the paper's unscaled
  ones. The init row reports each arm's end (chance, 90% here, is a run that did not train)."""
  _fake_run(tmp_path / "runs" / "baseline" / "seed0", 0, 0.30, 0.2, _kernels(True))
  _fake_run(tmp_path / "runs" / "paper_init" / "seed0", 0, 0.90, 0.9, _kernels(True))
  loaded = measures.load_all(str(tmp_path), arms.ARMS)
  row = next(line for line in recipe.departures_section(loaded) if line.startswith("| N(0, 0.01) weights"))
  assert row.endswith(
    "N(0, 0.01) with biases of 1 at this geometry: `paper_init` (on the study's inputs, divided by ImageNet's "
    "std) ended at 90.0% (seed 0, did not train); `paper_init_raw` (on inputs with only the mean subtracted, "
    "the paper's scale) has not run yet |"
  )
  _fake_run(tmp_path / "runs" / "paper_init_raw" / "seed0", 0, 0.45, 0.3, _kernels(True))
  row = recipe.init_evidence(measures.load_all(str(tmp_path), arms.ARMS))
  assert row.endswith("the paper's scale) ended at 45.0% (seed 0, trained)")


def test_a_baseline_with_the_papers_dropout_and_inputs_lists_no_such_departure(tmp_path):
  """Rows follow the baseline's config: with section 4.2's dropout (outputs, halved at test) and no std
  division, neither dropout row appears and the statistics row does not speak of the std."""
  folder = tmp_path / "runs" / "baseline" / "seed0"
  _fake_run(folder, 0, 0.30, 0.2, _kernels(True))
  summary = json.loads((folder / "summary.json").read_text())
  summary["config"]["model"].update(dropout_placement="fc6_fc7_outputs", dropout_scaling="at_test")
  summary["config"]["augment"]["std_rgb"] = []
  (folder / "summary.json").write_text(json.dumps(summary))
  table = recipe.departures_section(measures.load_all(str(tmp_path), arms.ARMS))
  assert not any("dropout on the outputs" in line or "kept units unscaled" in line for line in table)
  statistics = next(line for line in table if line.startswith("| the training set's mean subtracted"))
  assert "| ImageNet's per-channel mean subtracted; ImageNet's published PCA |" in statistics
  assert "the std" not in statistics
