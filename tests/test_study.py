"""The reproduction study's plan and report, on made-up runs whose statistics are computed by hand."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from test_ablate import _fake_diverged_run  # the run folder main leaves: diverged.json, metrics.jsonl

from alexnet_jax import configlib
from alexnet_jax.analysis import plots, sweep
from experiments.study import arms, figures, formatting, measures, prose, report, report_files

from conftest import REPO


def _lines_run_into_a_table(text):
  """Lines that Markdown would read as rows of the table above them: a table ends only at a blank line."""
  lines = text.splitlines()
  return [b for a, b in zip(lines, lines[1:]) if a.startswith("|") and b and not b.startswith("|")]


def test_runs_go_in_rounds_of_seeds_and_every_arm_is_a_valid_config():
  runs = arms.plan("/w")
  first_round = [r for r in runs if r.seed == 0]
  assert runs[: len(first_round)] == first_round and len(first_round) == len(arms.ARMS)
  assert len(runs) == sum(a.seeds for a in arms.ARMS)
  assert {a.name for a in arms.ARMS if a.seeds >= 5} == {"baseline", "no_lrn", "no_overlap", "tanh", "lrn_k1"}
  assert all(a.seeds >= 3 for a in arms.ARMS if a.name in {c.arm for c in arms.CLAIMS})
  assert runs[0].workdir == "/w/runs/baseline/seed0"
  for dataset in arms.DATASETS.values():
    for arm in arms.arms_of(dataset):
      sweep.validate(dataset.config, [(k, [v]) for k, v in arm.overrides.items()], [])


def test_imagewoof_runs_the_declared_arms_on_its_own_data():
  """34 runs: the LRN arms and pooling with 5 seeds, the towers and tanh with 3; Imagewoof's config is the
  study's with only the dataset swapped."""
  woof = arms.arms_of(arms.DATASETS["imagewoof"])
  assert {a.name: a.seeds for a in woof} == dict(
    baseline=5, no_lrn=5, no_overlap=5, tanh=3, one_gpu_half=3, lrn_gain_only=5, lrn_k1=5, one_tower=3
  )
  assert len(arms.plan("/w", woof)) == 34
  nette, woof_config = (configlib.load_config(arms.DATASETS[d].config) for d in ("imagenette", "imagewoof"))
  differences = sweep.config_differences(json.loads(nette.to_json_best_effort()), json.loads(woof_config.to_json()))
  assert differences == ["dataset.name: 'imagenette2_128' -> 'imagewoof2_128'"]


def _fake_run(folder, seed, val_top1, train_top1, kernel, epochs=4.0, slope=0.1):
  """A run as report_files.copy_finished leaves it: summary.json, metrics.jsonl, conv1_kernels.npy."""
  os.makedirs(folder)
  final = {
    "eval/top1_error": val_top1,
    "eval/top5_error": val_top1 / 3,
    "eval_ten_crop/top1_error": val_top1,
    "eval_ten_crop/top5_error": val_top1 / 3,
    "train_eval/top1_error": train_top1,
  }
  summary = {
    "final": final,
    "train_images_per_sec": 300.0,
    "wall_time_s": 600.0,
    "epochs": epochs,
    "parameters": 1000,
    "device_kind": "cpu",
    "devices": 1,
    "jax_version": "0",
    "config": {
      "model": {"num_classes": 10, "preset": "paper", "width_multiplier": 0.25, "init_scheme": "he"},
      "dataset": {"name": "fake"},
      "augment": {"resize_to": 76, "crop_size": 67},
      "batch_size": 64,
      "num_epochs": epochs,
      "optim": {
        "learning_rate": 0.02,
        "schedule": "cosine",
        "warmup_epochs": 0.5,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "weight_decay_mode": "coupled",
      },
    },
  }
  with open(os.path.join(folder, "summary.json"), "w") as f:
    json.dump(summary, f)
  with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
    for epoch in range(1, int(epochs) + 1):  # training error falls 0.8, 0.6, 0.4, 0.2 (+ val_top1 - 0.3)
      f.write(
        json.dumps(
          {
            "kind": "train",
            "step": epoch,
            "epoch": float(epoch),
            "train/top1_error": 1.0 - 0.2 * epoch + (val_top1 - 0.3),
          }
        )
        + "\n"
      )
      f.write(
        json.dumps(
          {"kind": "eval", "step": epoch, "epoch": float(epoch), "eval/top1_error": val_top1 + slope * (epochs - epoch)}
        )
        + "\n"
      )
  np.save(os.path.join(folder, "conv1_kernels.npy"), kernel)


def _kernels(colourful_half: bool):
  """12 kernels: grey ones, and (when asked) single-channel ones in the second half."""
  w = np.zeros((3, 3, 3, 12))
  w[..., :] = 1.0
  if colourful_half:
    w[:, :, 1:, 6:] = 0.0  # red only: colour share 2/3
  return w


def test_the_report_pairs_seeds_sets_failed_runs_apart_and_reads_the_kernels(tmp_path):
  base = {0: 0.30, 1: 0.40, 2: 0.50}
  for seed, top1 in base.items():
    _fake_run(tmp_path / "runs" / "baseline" / f"seed{seed}", seed, top1, top1 - 0.10, _kernels(True))
    # no LRN: 1.9, 2.0 and 2.1 points worse (seeds that agreed exactly would give no verdict)
    worse = 0.019 + 0.001 * seed
    _fake_run(tmp_path / "runs" / "no_lrn" / f"seed{seed}", seed, top1 + worse, top1 - 0.08, _kernels(True))
    # one tower: no colour split between its halves
    _fake_run(tmp_path / "runs" / "one_tower" / f"seed{seed}", seed, top1, top1 - 0.1, _kernels(False))
  # tanh: seed 1 stayed at chance; the others 1 point behind ReLU each epoch of training error (+0.01)
  for seed, top1 in ((0, 0.31), (1, 0.90), (2, 0.51)):
    _fake_run(tmp_path / "runs" / "tanh" / f"seed{seed}", seed, top1, top1 - 0.1, _kernels(True))
  report.write_report(str(tmp_path), arms.ARMS, arms.CLAIMS, command="test")
  text = (tmp_path / "README.md").read_text()
  assert "**Partial results: 12 of 57 runs finished.**" in text
  no_lrn_row = next(line for line in text.splitlines() if line.startswith("| 3 |"))
  assert no_lrn_row.count("+2.00 [+1.75, +2.25]") == 2  # top-1 centre and 10-crop: t(2) x 0.1 / sqrt(3)
  assert no_lrn_row.endswith("| 10-crop top-1: confirmed |")
  assert "| tanh | section 3.1: tanh in place of ReLU | 3 / 6 | 1 of 3 (seed 1) |" in text
  # Claim 1: threshold = the baseline's mean training error at epoch 1 (a quarter of 4): 0.8 + mean(0, .1, .2)
  assert "Epochs to a training error of 90.0%" in text
  # Kernels: the baseline's towers differ by 2/3 - 0 in colour share on every seed, the control's halves by 0.
  assert "| baseline | 0 | 0.667 | 0.000 | 0.667 |" in text and "| one_tower | 2 | 0.000 | 0.000 | 0.000 |" in text
  assert "the specialisation is reproduced" in text
  # The towers' control: parameters from the summaries, the one-tower net level with the towers on every seed.
  assert "| baseline | 1,000 | 3 of 3 | – | – |" in text and "| one_gpu_half | – | 0 of 0 | – | – |" in text
  assert "| one_tower | 1,000 | 3 of 3 | +0.00 [+0.00, +0.00] | +0.00 [+0.00, +0.00] |" in text
  headline, findings = text.split("## Findings\n\n", 1)[1].split("\n\n")[:2]
  assert "12 of 57 runs" in headline and "1 confirmed: LRN (3);" in headline
  # +2.0 [+1.8, +2.2] excludes the paper's +1.4 and later work's -0.1; figure 3 is reproduced.
  assert (
    "the effect of LRN (claim 3: +2.0 [+1.8, +2.2] points) is larger than the paper's (+1.4) and larger than "
    "later work's (-0.1)" in headline
  )
  assert "colour specialisation" not in headline
  assert "Study state: 12 of 57 runs (the rest still to run)" in findings
  assert (
    "Confirmed: claim 3 (LRN: +2.0 [+1.8, +2.2] points of 10-crop top-1 error (+2.0 [+1.8, +2.2] with the centre "
    "crop), 3 seeds)" in findings
  )
  assert "Runs that did not train (left out of the pairs): tanh 1 of 3." in findings
  # Both arms' validation curves sit 0.1 above their final error at epoch 3 (the record nearest 80% of 4).
  assert "| 3 | no_lrn | +2.00 [+1.75, +2.25] | +2.00 [+1.75, +2.25] | +0.00 |" in text
  for figure in (
    "effects.png",
    "figure1_relu_tanh.png",
    "figure3_conv1_kernels.png",
    "figure3_colour_share.png",
    "curves.png",
  ):
    assert (tmp_path / figure).stat().st_size > 0
  assert _lines_run_into_a_table(text) == []


def test_finished_runs_are_copied_with_their_final_conv1_kernels(tmp_path, monkeypatch):
  run = sweep.Run("baseline", {}, 0, str(tmp_path / "work"))
  os.makedirs(run.workdir)
  for name in ("summary.json", "metrics.jsonl", "config.json"):
    (tmp_path / "work" / name).write_text("{}")
  kernel = np.arange(11 * 11 * 3 * 4, dtype=np.float32).reshape(11, 11, 3, 4)
  monkeypatch.setattr(report_files, "final_conv1_kernels", lambda workdir: kernel)
  unfinished = sweep.Run("baseline", {}, 1, str(tmp_path / "other"))
  assert report_files.copy_finished([run, unfinished], str(tmp_path / "report")) == 1
  copied = tmp_path / "report" / "runs" / "baseline" / "seed0"
  assert sorted(os.listdir(copied)) == ["config.json", "conv1_kernels.npy", "metrics.jsonl", "summary.json"]
  np.testing.assert_array_equal(np.load(copied / "conv1_kernels.npy"), kernel)


def test_a_finished_run_without_checkpoints_is_copied_without_kernels_instead_of_stopping_the_copy(tmp_path):
  """A run folder restored from a committed report has no checkpoints/: the copy goes on past it."""
  runs = [sweep.Run("baseline", {}, seed, str(tmp_path / f"work{seed}")) for seed in (0, 1)]
  for run in runs:
    os.makedirs(run.workdir)
    for name in ("summary.json", "metrics.jsonl", "config.json"):
      (tmp_path / f"work{run.seed}" / name).write_text("{}")
  os.makedirs(os.path.join(runs[1].workdir, "checkpoints"))  # a checkpoints folder with no step in it
  assert report_files.copy_finished(runs, str(tmp_path / "report")) == 2
  for seed in (0, 1):
    copied = tmp_path / "report" / "runs" / "baseline" / f"seed{seed}"
    assert sorted(os.listdir(copied)) == ["config.json", "metrics.jsonl", "summary.json"]


def test_a_diverged_run_is_copied_without_kernels_and_reported_as_not_trained(tmp_path, monkeypatch):
  run = sweep.Run("baseline", {}, 0, str(tmp_path / "work"))
  _fake_diverged_run(run)
  (tmp_path / "work" / "config.json").write_text("{}")
  monkeypatch.setattr(report_files, "final_conv1_kernels", lambda workdir: pytest.fail("a diverged net has no kernels"))
  assert report_files.copy_finished([run], str(tmp_path / "report")) == 1
  copied = tmp_path / "report" / "runs" / "baseline" / "seed0"
  assert sorted(os.listdir(copied)) == ["config.json", "diverged.json", "metrics.jsonl"]
  arm = next(a for a in arms.ARMS if a.name == "baseline")
  (loaded,) = measures.load_arm(str(tmp_path / "report"), arm)
  assert loaded["failed"] and loaded["kernels"] is None
  assert formatting.trained_cell(loaded) == "no (Non-finite training loss at step 7 (learning rate 0.04))"
  assert formatting.signed_or_dash(measures.late_change(loaded["curve"])) == "–"  # one evaluation: no trend
  assert formatting.signed_or_dash(-0.004) == "-0.00"


def test_the_readme_states_the_findings_the_committed_runs_give():
  """README.md's findings block and the committed report are what the committed runs give today (the
  report compared, as committed, with the 15-epoch study, and read against the committed Imagewoof runs)."""
  results = os.path.join(os.path.dirname(__file__), "..", "experiments", "results")
  report_dir, shorter = os.path.join(results, "study"), os.path.join(results, "study_15ep")
  nette, woof = arms.DATASETS["imagenette"], os.path.join(results, "study_imagewoof")
  loaded, other, replica = report.load_inputs(report_dir, arms.ARMS, nette, shorter, woof)
  headline = prose.headline(arms.ARMS, arms.CLAIMS, loaded, other, nette.data, replica)
  readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
  content, begin, end = report_files.block_bounds(readme)
  assert content[begin:end].strip() == prose.readme_block(arms.CLAIMS, loaded, replica), (
    "rerun: python -m experiments.study --report_only --compare_to=experiments/results/study_15ep --readme=README.md"
  )
  with open(os.path.join(report_dir, "README.md")) as f:
    assert f"## Findings\n\n{headline}\n" in f.read()


def test_the_findings_block_is_replaced_in_place_and_a_file_without_one_is_left_alone(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text(f"intro\n{report_files.README_BEGIN}\nold findings\n{report_files.README_END}\nrest\n")
  report_files.replace_block(str(readme), "new findings")
  assert readme.read_text() == f"intro\n{report_files.README_BEGIN}\nnew findings\n{report_files.README_END}\nrest\n"
  other = tmp_path / "OTHER.md"
  other.write_text(f"{report_files.README_END}\n{report_files.README_BEGIN}\n")  # the markers in the wrong order
  with pytest.raises(configlib.ConfigError, match="no findings block"):
    report_files.replace_block(str(other), "new findings")
  assert other.read_text() == f"{report_files.README_END}\n{report_files.README_BEGIN}\n"


def test_epochs_to_converge_read_the_curve_asked_for_and_count_never_as_the_run_length():
  def run(seed, val, train):
    curve = lambda errors: [(float(e + 1), x) for e, x in enumerate(errors)]
    return {"seed": seed, "failed": False, "curve": curve(val), "train_curve": curve(train), "summary": {"epochs": 4.0}}

  # Validation error: the baseline gets to 0.5 at epochs 3 and 4, the arm at 1 and 2; the training
  # curves say the opposite, so reading the wrong curve fails.
  base = [run(0, [0.9, 0.7, 0.5, 0.4], [0.5, 0.4, 0.3, 0.2]), run(1, [0.9, 0.8, 0.6, 0.5], [0.5, 0.4, 0.3, 0.2])]
  arm = [run(0, [0.5, 0.4, 0.3, 0.3], [0.9, 0.9, 0.9, 0.9]), run(1, [0.6, 0.5, 0.4, 0.3], [0.9, 0.9, 0.9, 0.9])]
  epochs, interval, ratio = measures.epochs_effect(base, arm, 0.5, curve="curve")
  assert epochs == {0: 1.0, 1: 2.0} and interval.mean == -2.0 and ratio == 1.5 / 3.5
  epochs, interval, _ = measures.epochs_effect(base, arm, 0.5)  # training curves: the arm never gets there
  assert epochs == {0: float("inf"), 1: float("inf")} and interval.mean == 4.0 - 1.0


def test_the_budget_comparison_pairs_seeds_across_budgets_and_names_what_else_changed(tmp_path):
  short, long = tmp_path / "short", tmp_path / "long"
  base_short, base_long = {0: 0.40, 1: 0.50, 2: 0.60}, {0: 0.30, 1: 0.38, 2: 0.52}  # -10, -12, -8 points
  lrn_short, lrn_long = {0: 0.030, 1: 0.020, 2: 0.025}, {0: 0.010, 1: 0.010, 2: 0.015}  # Δ change -2, -1, -1
  for seed in range(3):
    for where, base, lrn, epochs in ((short, base_short, lrn_short, 4.0), (long, base_long, lrn_long, 8.0)):
      _fake_run(where / "runs" / "baseline" / f"seed{seed}", seed, base[seed], 0.1, _kernels(True), epochs)
      _fake_run(where / "runs" / "no_lrn" / f"seed{seed}", seed, base[seed] + lrn[seed], 0.1, _kernels(True), epochs)
  summary = long / "runs" / "baseline" / "seed0" / "summary.json"
  changed = json.loads(summary.read_text())
  changed["config"]["model"]["lrn_impl"] = "auto"  # a key the short study's config lacks
  summary.write_text(json.dumps(changed))
  # The longer study's report, compared with the shorter one: the table reads shorter -> longer.
  headline = report.write_report(str(long), arms.ARMS, arms.CLAIMS, compare_to=str(short))
  text = (long / "README.md").read_text()
  # Baseline: mean -10, sd 2, t(2, 0.975) = 4.3027: half-width 4.3027 x 2 / sqrt(3) = 4.97, all below -1.
  assert "| baseline | 50.00 | 40.00 | -10.00 [-14.97, -5.03] | no |" in text
  # LRN's Δ: 3, 2, 2.5 (sd 0.5: half-width 4.3027 x 0.5 / sqrt(3) = 1.24) -> 1, 1, 1.5 (sd 0.289: 0.72);
  # its change -2, -1, -1: mean -4/3, sd 0.577, half-width 1.43; confirmed at both budgets.
  assert (
    "| 3 (LRN) | 10-crop top-1 | +2.50 [+1.26, +3.74] | +1.17 [+0.45, +1.88] | -1.33 [-2.77, +0.10] | "
    "confirmed | confirmed |" in text
  )
  assert "`model.lrn_impl: '(absent)' -> 'auto'`." in text and "num_epochs:" not in text
  assert headline.endswith(
    "From 4 to 8 epochs the baseline's 10-crop top-1 error changed by -10.0 [-15.0, -5.0] points; the 4-epoch "
    "error had not settled (the interval lies beyond ±1 point)."
  )
  # The curves sit 0.1 per epoch above the final error: at epoch 4 of 8, 0.4 above the long runs' ends,
  # so the short runs' ending "gained" 30, 28 and 32 points over them.
  assert "| baseline | 50.00 | 80.00 | +30.00 [+25.03, +34.97] | 40.00 |" in text
  assert (long / "budget_curves.png").stat().st_size > 0
  assert _lines_run_into_a_table(text) == []


def test_a_comparison_folder_without_study_runs_is_refused_up_front(tmp_path):
  report_files.check_compare_to("")  # no comparison asked for
  with pytest.raises(configlib.ConfigError, match="holds no study runs"):
    report_files.check_compare_to(str(tmp_path))


def test_flat_runs_are_called_converged_and_an_arm_without_runs_gives_no_ratio(tmp_path):
  for seed in range(3):
    for arm, top1 in (("baseline", 0.30), ("no_lrn", 0.32 + 0.001 * seed)):
      _fake_run(tmp_path / "runs" / arm / f"seed{seed}", seed, top1, 0.1, _kernels(True), slope=0.0)
  headline = report.write_report(str(tmp_path), arms.ARMS, arms.CLAIMS)
  assert "All 6 trained runs were flat over their last 20% of epochs" in headline
  assert "not of converged runs" not in headline
  assert "ReLU against tanh (1, on the epochs)," in headline  # no tanh run: no 'nanx' ratio


def test_the_late_change_is_the_fitted_line_over_the_window_so_one_noisy_evaluation_does_not_decide_it():
  # 30 epochs: the last 20% window holds the evaluations at epochs 24..30.
  falling = [(float(e), 0.40 - 0.001 * e) for e in range(1, 31)]  # 0.1 point an epoch
  change, scatter = measures.late_fit(falling)
  assert change == pytest.approx(-0.6) and scatter == pytest.approx(0.0, abs=1e-9)
  # Flat at 30%, but epoch 24 reads 1.2 points high. Ends: -1.2, past the flat bound. The line, by hand:
  # epochs 24..30 have mean 27 and sum of squared deviations 28; the only deviation from flat is +1.2 at
  # epoch 24 (3 epochs below the mean), so the slope is -3 * 1.2 / 28 a point per epoch, over 6 epochs.
  flat = [(float(e), 0.312 if e == 24 else 0.30) for e in range(1, 31)]
  assert measures.endpoint_change(flat) == pytest.approx(-1.2)
  assert measures.late_change(flat) == pytest.approx(-3 * 1.2 / 28 * 6)
  assert abs(measures.late_change(flat)) < measures.CONVERGED_POINTS < abs(measures.endpoint_change(flat))


def test_a_curve_panel_draws_the_runs_that_did_not_train_instead_of_leaving_them_out():
  plt = plots.pyplot()
  run = lambda seed, errors, failed: {"seed": seed, "curve": list(enumerate(errors, 1)), "failed": failed}
  loaded = {
    "baseline": [run(0, [0.5, 0.4], False), run(1, [0.7, 0.6], False)],
    "no_lrn_lr_double": [run(0, [0.91, 0.90], True), run(1, [0.8, 0.7], False)],
  }
  fig, ax = plt.subplots()
  figures.draw_arm_panel(ax, loaded, "no_lrn_lr_double")
  drawn = [list(np.round(line.get_ydata(), 6)) for line in ax.get_lines()]
  # The baseline's mean over its two seeds, the arm's one trained seed, and the failed run on its own.
  assert drawn == [[60.0, 50.0], [80.0, 70.0], [91.0, 90.0]]
  assert ax.get_lines()[-1].get_linestyle() == ":"
  assert ax.get_title() == "no_lrn_lr_double (1 of 2 did not train)"
  plt.close(fig)


def test_a_report_dir_holding_runs_this_workdir_did_not_make_is_refused_before_anything_is_written(tmp_path):
  """The committed reports are the default report_dirs: a new study there would overwrite their runs, or
  mix its runs with them. A continued study (the same results in both folders) is let through."""
  runs = arms.plan(str(tmp_path / "work"), arms.ARMS)
  baseline = next(r for r in runs if (r.name, r.seed) == ("baseline", 0))
  kept = tmp_path / "report" / "runs" / "baseline" / "seed0"
  kept.mkdir(parents=True)
  (kept / "summary.json").write_text('{"step": 9, "eval/top1_error": 0.3}')
  for training in (True, False):
    report_files.check_report_dir(runs, str(tmp_path / "empty"), training)  # nothing there to overwrite
  report_files.check_report_dir(runs, str(tmp_path / "report"), training=False)  # nothing finished to copy over it
  with pytest.raises(configlib.ConfigError, match=r"holds 1 run\(s\) .* \(e\.g\. baseline seed 0\)"):
    report_files.check_report_dir(runs, str(tmp_path / "report"), training=True)  # it would be trained anew
  os.makedirs(baseline.workdir)
  with open(os.path.join(baseline.workdir, "summary.json"), "w") as f:
    json.dump({"eval/top1_error": 0.3, "step": 9}, f)  # the same result: the run this report copied
  for training in (True, False):
    report_files.check_report_dir(runs, str(tmp_path / "report"), training)
  (pathlib.Path(baseline.workdir) / "summary.json").write_text('{"step": 9, "eval/top1_error": 0.4}')
  for training in (True, False):
    with pytest.raises(configlib.ConfigError, match="Give --report_dir a new folder"):
      report_files.check_report_dir(runs, str(tmp_path / "report"), training)
  (kept / "summary.json").write_text('{"step": 9, "eval/top1')  # cut short
  with pytest.raises(configlib.ConfigError, match=r"Cannot read .*summary.json .*move .*seed0 aside"):
    report_files.check_report_dir(runs, str(tmp_path / "report"), training=False)
  (kept / "summary.json").write_text('{"step": 9, "eval/top1_error": 0.3}')
  # The command line: refused with status 2, the report folder as it was.
  before = sorted(str(p) for p in (tmp_path / "report").rglob("*"))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.study",
      f"--workdir={tmp_path / 'work'}",
      f"--report_dir={tmp_path / 'report'}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2 and "this --workdir did not make (e.g. baseline seed 0)" in result.stderr
  assert sorted(str(p) for p in (tmp_path / "report").rglob("*")) == before
  assert (kept / "summary.json").read_text() == '{"step": 9, "eval/top1_error": 0.3}'


def test_only_the_imagenette_report_writes_the_readmes_findings(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text(f"intro\n{report_files.README_BEGIN}\nfindings\n{report_files.README_END}\n")
  result = subprocess.run(
    [sys.executable, "-m", "experiments.study", "--dataset=imagewoof", "--report_only", f"--readme={readme}"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2 and "the README's findings are the Imagenette report's" in result.stderr
  assert readme.read_text() == f"intro\n{report_files.README_BEGIN}\nfindings\n{report_files.README_END}\n"


def test_folder_flags_are_in_the_home_folder_when_they_start_with_a_tilde(tmp_path):
  """`--report_dir=~/report`: a shell leaves the ~ after '=' alone, so the study expands it, rather than
  writing into a folder named '~' under the working directory."""
  home, cwd = tmp_path / "home", tmp_path / "cwd"
  cwd.mkdir()
  result = subprocess.run(
    [sys.executable, "-m", "experiments.study", "--dataset=imagewoof", "--report_only"]
    + ["--workdir=~/runs", "--report_dir=~/report"],
    cwd=cwd,
    env={**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert (home / "report" / "README.md").exists() and not (cwd / "~").exists()
