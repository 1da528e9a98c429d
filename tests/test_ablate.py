"""Ablation sweeps (analysis/sweep.py runs them, analysis/ablate.py reports them): a 2x2 sweep with 1 seed
on the smoke config, its files, skipping on re-run, refusing a workdir of another config, and how parallel
runs share GPUs."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from alexnet_jax import configlib
from alexnet_jax.analysis import ablate, sweep

from conftest import REPO


def test_sweep_parsing_and_validation():
  axes = sweep.parse_sweep(ablate.DEFAULT_SWEEP)
  assert axes == [("model.use_lrn", [True, False]), ("model.overlapping_pool", [True, False])]
  points = sweep.grid(axes)
  assert len(points) == 4 and points[0] == {"model.use_lrn": True, "model.overlapping_pool": True}
  assert sweep.run_name(points[3]) == "use_lrn=False,overlapping_pool=False"
  with pytest.raises(configlib.ConfigError, match="Unknown config key 'model.use_lrm'"):
    sweep.validate(f"{REPO}/configs/alexnet.py:smoke", sweep.parse_sweep("model.use_lrm=True,False"), [])
  with pytest.raises(configlib.ConfigError, match="is a bool"):
    sweep.validate(f"{REPO}/configs/alexnet.py:smoke", sweep.parse_sweep("model.use_lrn=yes,no"), [])


def test_counts_that_would_run_nothing_or_wait_forever_are_refused():
  sweep.check_counts(seeds=1, parallel=1, gpus=0)
  for counts, flag in (((0, 1, 0), "--seeds=0"), ((3, 0, 0), "--parallel=0"), ((3, 2, -1), "--gpus=-1")):
    with pytest.raises(configlib.ConfigError, match=f"{flag}: use"):
      sweep.check_counts(*counts)


def test_config_differences_names_each_changed_leaf():
  stored = {"seed": 0, "model": {"use_lrn": True, "width": 1.0}, "tags": [1, 2], "old": 1}
  intended = {"seed": 0, "model": {"use_lrn": False, "width": 1.0}, "tags": [1, 3], "new": 2}
  assert sweep.config_differences(stored, intended) == [
    "model.use_lrn: True -> False",
    "new: '(absent)' -> 2",
    "old: 1 -> '(absent)'",
    "tags: [1, 2] -> [1, 3]",
  ]
  assert sweep.config_differences(stored, json.loads(json.dumps(stored))) == []


def test_a_key_added_after_a_run_differs_only_where_the_run_is_given_another_value():
  """A run made before `model.lrn_k` existed is the same run at the key's default (the old behaviour),
  and another run where its sweep sets the key elsewhere; how to prepare the data never differs."""
  stored = {"model": {"use_lrn": True}, "dataset": {"prepare_args": "--source=folder:/old"}}
  defaults = {"model": {"use_lrn": True, "lrn_k": 2.0}, "dataset": {"prepare_args": "--source=tfds:x"}}
  assert sweep.config_differences(stored, defaults, defaults=defaults) == []
  changed = {"model": {"use_lrn": True, "lrn_k": 1.0}, "dataset": {"prepare_args": "--source=tfds:x"}}
  assert sweep.config_differences(stored, changed, defaults=defaults) == ["model.lrn_k: '(absent)' -> 1.0"]
  assert sweep.config_differences(stored, defaults) == ["model.lrn_k: '(absent)' -> 2.0"]  # no defaults given


def test_existing_run_of_another_config_is_refused_before_anything_runs(tmp_path):
  spec = f"{REPO}/configs/alexnet.py:smoke"
  runs = sweep.plan(str(tmp_path), sweep.parse_sweep("model.use_lrn=True,False"), seeds=2)
  sweep.check_existing_runs(runs, spec, ["num_epochs=2"])  # no run folders yet: nothing to refuse
  # A run that main started with the same settings (its config.json as main writes it: another seed per run).
  same = runs[1]
  assert (same.point, same.seed) == ({"model.use_lrn": True}, 1)
  os.makedirs(same.workdir)
  config = configlib.load_config(spec)
  config.num_epochs, config.seed = 2.0, 1
  (tmp_path / "runs" / same.name / "seed1" / "config.json").write_text(config.to_json_best_effort())
  sweep.check_existing_runs(runs, spec, ["num_epochs=2"])
  # The same folder under a sweep with another --set value, or with the seed it does not have.
  with pytest.raises(
    configlib.ConfigError,
    match=r"1 of the sweep's run folders .*seed1: num_epochs: 2.0 -> 5.0\. "
    r"Use a new --workdir",
  ):
    sweep.check_existing_runs(runs, spec, ["num_epochs=5"])
  config.seed = 0
  (tmp_path / "runs" / same.name / "seed1" / "config.json").write_text(config.to_json_best_effort())
  with pytest.raises(configlib.ConfigError, match="seed: 0 -> 1"):
    sweep.check_existing_runs(runs, spec, ["num_epochs=2"])
  (tmp_path / "runs" / same.name / "seed1" / "config.json").write_text("{cut short")
  with pytest.raises(configlib.ConfigError, match="Cannot read .*config.json"):
    sweep.check_existing_runs(runs, spec, ["num_epochs=2"])


def test_a_run_made_before_the_dropout_keys_existed_is_its_old_dropout(tmp_path):
  """config.json files written before `model.dropout_placement` and `model.dropout_scaling` lack them, and
  those runs dropped fc6's and fc7's inputs, rescaled in training: the study's runs are the study config's
  runs; a smoke run is not today's smoke run."""
  for variant, refused in (("study", False), ("smoke", True)):
    spec = f"{REPO}/configs/alexnet.py:{variant}"
    runs = sweep.plan(str(tmp_path / variant), sweep.parse_sweep("model.use_lrn=True"), seeds=1)
    stored = json.loads(sweep.run_config(spec, [], runs[0].point, 0).to_json_best_effort())
    del stored["model"]["dropout_placement"], stored["model"]["dropout_scaling"]
    os.makedirs(runs[0].workdir)
    with open(os.path.join(runs[0].workdir, "config.json"), "w") as f:
      json.dump(stored, f)
    if refused:
      with pytest.raises(configlib.ConfigError) as raised:
        sweep.check_existing_runs(runs, spec, [])
      assert "model.dropout_placement: 'fc6_fc7_inputs' -> 'fc6_fc7_outputs'" in str(raised.value)
      assert "model.dropout_scaling: 'in_training' -> 'at_test'" in str(raised.value)
    else:
      sweep.check_existing_runs(runs, spec, [])


def test_parallel_runs_get_a_gpu_each_or_a_share_of_its_memory():
  base = {"PATH": "/bin"}
  # One run at a time: the environment is left alone.
  assert sweep.run_environment(base, None, parallel=1, gpus=0) == base
  # 4 runs over 4 GPUs: one GPU each, the usual preallocation.
  assert sweep.run_environment(base, 2, parallel=4, gpus=4) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "2"}
  # 4 runs over 2 GPUs: two per GPU, 0.45 of its memory each; 3 runs on the same GPU(s): 0.3 each.
  assert sweep.run_environment(base, 1, parallel=4, gpus=2) == {
    "PATH": "/bin",
    "CUDA_VISIBLE_DEVICES": "1",
    "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.45",
  }
  assert sweep.run_environment(base, None, parallel=3, gpus=0) == {
    "PATH": "/bin",
    "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.30",
  }
  assert sweep.runs_per_gpu(5, 2) == 3 and sweep.runs_per_gpu(2, 1) == 2 and sweep.runs_per_gpu(2, 8) == 1
  # A new run goes to the GPU with the fewest runs: after GPU 1's run ends, 1 again, not the next in turn.
  assert sweep.least_busy_gpu([], 3) == 0
  assert sweep.least_busy_gpu([0, 2], 3) == 1
  assert sweep.least_busy_gpu([0, 2, 0, 1, 2], 3) == 1
  # The user's own memory setting wins.
  mine = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
  assert sweep.run_environment(mine, None, parallel=3, gpus=0) == mine


SWEEP_ENV = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")


def sweep_command(workdir, data_dir, *sets, sweep=None):
  """`python -m alexnet_jax.ablate` over the smoke variant at 1/8 width on the test run's synthetic data, one seed."""
  sets = [
    f"dataset.data_dir={data_dir}",
    "dataset.num_workers=0",
    "dataset.auto_prepare=False",
    "model.width_multiplier=0.125",
    "batch_size=16",
    "progress_bar=False",
    *sets,
  ]
  command = [
    sys.executable,
    "-m",
    "alexnet_jax.ablate",
    f"--config={REPO}/configs/alexnet.py:smoke",
    f"--workdir={workdir}",
    "--seeds=1",
  ] + [f"--set={s}" for s in sets]
  return command + ([f"--sweep={sweep}"] if sweep else [])


@pytest.mark.slow
def test_two_by_two_sweep_writes_results_and_skips_finished_runs(tmp_path, synthetic_data_dir):
  """Two runs at a time (--parallel=2): the 2 cores compile two configurations at once."""
  workdir = tmp_path / "sweep"
  command = sweep_command(
    workdir, synthetic_data_dir, "num_train_steps=50", "eval_every_epochs=1.0", "log_every_steps=25"
  ) + ["--parallel=2"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=SWEEP_ENV)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  for name in ("results.csv", "results.md", "curves.png", "ablation.png"):
    assert (workdir / name).stat().st_size > 0, name
  with open(workdir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4
  assert rows[0]["config"] == "use_lrn=True,overlapping_pool=True"  # the baseline first
  # The baseline's difference to itself is 0 where it trained; a baseline still near chance after 50 steps
  # is listed as not trained, and then no difference is reported at all.
  assert float(rows[0]["eval/top1_error diff"]) == 0.0 or rows[0]["did not train"] == "0"
  lrn_off = next(r for r in rows if r["config"] == "use_lrn=False,overlapping_pool=True")
  assert lrn_off["paper effect top1/top5"] == "+1.4/+1.2"
  table = (workdir / "results.md").read_text()
  assert table.count("| use_lrn=") == 4
  summaries = {p: p.stat().st_mtime for p in workdir.glob("runs/*/seed0/summary.json")}
  assert len(summaries) == 4

  again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=SWEEP_ENV)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("skip ") == 4 and "run  " not in again.stdout
  assert {p: p.stat().st_mtime for p in summaries} == summaries

  # The same workdir under another --set value: refused before anything runs, nothing rewritten.
  results_md = (workdir / "results.md").read_text()
  changed = [c.replace("num_train_steps=50", "num_train_steps=60") for c in command]
  refused = subprocess.run(changed, capture_output=True, text=True, timeout=600, env=SWEEP_ENV)
  assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-3000:]
  assert "4 of the sweep's run folders hold runs of another config" in refused.stderr
  assert "num_train_steps: 50 -> 60" in refused.stderr and "run  " not in refused.stdout
  assert {p: p.stat().st_mtime for p in summaries} == summaries
  assert (workdir / "results.md").read_text() == results_md


@pytest.mark.slow
def test_a_sweep_with_a_failed_run_still_reports_the_finished_ones_as_partial(tmp_path, synthetic_data_dir):
  workdir = tmp_path / "sweep"
  command = sweep_command(
    workdir,
    synthetic_data_dir,
    "num_train_steps=10",
    "eval_every_epochs=100.0",
    "augment.final_eval_views=center",
    sweep="model.pool_impl=xla,no_such_impl",
  )
  result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=SWEEP_ENV)
  assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
  assert "FAILED pool_impl=no_such_impl seed 0" in result.stdout
  assert "1 run(s) failed; re-run the same command to retry them" in result.stderr
  table = (workdir / "results.md").read_text()
  assert "**Partial results**: 1 of 2 runs finished" in table
  assert [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| pool_impl=")] == [
    "pool_impl=xla"
  ]
  assert (workdir / "curves.png").stat().st_size > 0


def _fake_finished_run(run, top1, top5=0.1, num_classes=10):
  """A run folder as main leaves it: summary.json and metrics.jsonl with one eval record."""
  os.makedirs(run.workdir)
  final = {
    "eval/top1_error": top1,
    "eval/top5_error": top5,
    "eval_ten_crop/top1_error": top1 - 0.01,
    "eval_ten_crop/top5_error": top5,
  }
  summary = {
    "final": final,
    "train_images_per_sec": 100.0,
    "wall_time_s": 60.0,
    "config": {"model": {"num_classes": num_classes}},
  }
  with open(os.path.join(run.workdir, "summary.json"), "w") as f:
    json.dump(summary, f)
  with open(os.path.join(run.workdir, "metrics.jsonl"), "w") as f:
    f.write(json.dumps({"kind": "train", "step": 5, "epoch": 1.0, "train/top1_error": top1 + 0.05}) + "\n")
    f.write(json.dumps({"kind": "eval", "step": 5, "epoch": 1.0, **final}) + "\n")


def test_differences_are_seed_paired_with_t_intervals_and_failed_runs_are_set_apart(tmp_path):
  axes = sweep.parse_sweep("model.use_lrn=True,False;model.dropout_rate=0.5,0.0")
  runs = [
    r
    for r in sweep.plan(str(tmp_path), axes, seeds=3)
    if r.point["model.dropout_rate"] == 0.5 or r.point["model.use_lrn"]
  ]
  baseline = {0: 0.30, 1: 0.40, 2: 0.50}
  for run in runs:
    if run.point == {"model.use_lrn": True, "model.dropout_rate": 0.5}:
      _fake_finished_run(run, baseline[run.seed])
    elif not run.point["model.use_lrn"]:  # exactly +2 points on every seed
      _fake_finished_run(run, baseline[run.seed] + 0.02)
    else:  # no dropout: seed 1 stayed at chance; the others 1 and 3 points worse
      _fake_finished_run(run, {0: 0.31, 1: 0.905, 2: 0.53}[run.seed])
  base_point = {"model.use_lrn": True, "model.dropout_rate": 0.5}
  rows = {r["config"]: r for r in ablate.aggregate(runs, sweep.run_name(base_point), base_point)}
  base, no_lrn = rows["use_lrn=True,dropout_rate=0.5"], rows["use_lrn=False,dropout_rate=0.5"]
  key = "eval/top1_error"
  assert (base[f"{key} diff"], base[f"{key} diff low"], base[f"{key} diff high"]) == (0.0, 0.0, 0.0)
  assert no_lrn[f"{key} diff"] == pytest.approx(2.0)
  assert (no_lrn[f"{key} diff low"], no_lrn[f"{key} diff high"]) == pytest.approx((2.0, 2.0))
  assert no_lrn["paper effect top1/top5"] == "+1.4/+1.2"
  no_dropout = rows["use_lrn=True,dropout_rate=0.0"]
  assert no_dropout["did not train"] == "1" and no_dropout[f"{key} pairs"] == 2
  assert no_dropout[f"{key} mean"] == pytest.approx(42.0)  # (31 + 53) / 2: the chance-level seed left out
  half = 12.706 * math.sqrt(2.0) / math.sqrt(2)  # differences 1 and 3: t(0.975, 1) * sd / sqrt(n)
  assert no_dropout[f"{key} diff"] == pytest.approx(2.0)
  assert no_dropout[f"{key} diff high"] == pytest.approx(2.0 + half, abs=1e-2)
  ablate.write_results(str(tmp_path), list(rows.values()), ["# test"])
  table = (tmp_path / "results.md").read_text()
  assert "| +2.00 [+2.00, +2.00] |" in table and "| +0.00 [+0.00, +0.00] |" in table
  assert "- use_lrn=True,dropout_rate=0.0: 0:31.00 2:53.00" in table


def _fake_diverged_run(run):
  """A run folder as main leaves one that non-finite losses stopped: diverged.json, with no final errors."""
  os.makedirs(run.workdir)
  summary = {
    "final": {},
    "diverged": "Non-finite training loss at step 7 (learning rate 0.04)",
    "train_images_per_sec": 100.0,
    "wall_time_s": 6.0,
    "config": {"model": {"num_classes": 10}},
  }
  with open(os.path.join(run.workdir, "diverged.json"), "w") as f:
    json.dump(summary, f)
  with open(os.path.join(run.workdir, "metrics.jsonl"), "w") as f:
    f.write(json.dumps({"kind": "eval", "step": 5, "epoch": 1.0, "eval/top1_error": 0.9}) + "\n")


def test_a_diverged_run_is_a_result_that_did_not_train_and_is_not_retried(tmp_path, monkeypatch, capsys):
  axes = sweep.parse_sweep("model.use_lrn=True,False")
  runs = sweep.plan(str(tmp_path), axes, seeds=3)
  for run in runs:
    if run.point["model.use_lrn"]:
      _fake_finished_run(run, 0.30 + 0.1 * run.seed)
    elif run.seed != 1:
      _fake_finished_run(run, 0.32 + 0.1 * run.seed)
  diverging = next(r for r in runs if not r.point["model.use_lrn"] and r.seed == 1)
  monkeypatch.setattr(sweep.Run, "command", lambda self, spec, overrides: pytest.fail("a finished run was retried"))
  _fake_diverged_run(diverging)
  assert diverging.done and diverging.diverged and not runs[0].diverged
  sweep.execute(runs, "configs/alexnet.py:smoke", [], parallel=1, gpus=0)  # nothing to run, nothing raised
  assert f"skip use_lrn=False seed 1: diverged ({diverging.workdir}/diverged.json)" in capsys.readouterr().out
  rows = {r["config"]: r for r in ablate.aggregate(runs, "use_lrn=True", {"model.use_lrn": True})}
  no_lrn = rows["use_lrn=False"]
  assert no_lrn["seeds"] == 3 and no_lrn["did not train"] == "1"
  assert no_lrn["eval/top1_error pairs"] == 2 and no_lrn["eval/top1_error diff"] == pytest.approx(2.0)


def test_a_run_that_diverges_while_the_sweep_runs_is_reported_not_failed(tmp_path, monkeypatch, capsys):
  run = sweep.plan(str(tmp_path), sweep.parse_sweep("model.use_lrn=False"), seeds=1)[0]
  diverged = {"final": {}, "diverged": "Non-finite training loss at step 7 (learning rate 0.04)"}
  main_that_diverges = (
    f"import json, sys; json.dump({diverged!r}, open({run.workdir!r} + '/diverged.json', 'w')); sys.exit(1)"
  )
  monkeypatch.setattr(sweep.Run, "command", lambda self, spec, overrides: [sys.executable, "-c", main_that_diverges])
  sweep.execute([run], "configs/alexnet.py:smoke", [], parallel=1, gpus=0)  # raises where a run failed
  assert "DIVERGED use_lrn=False seed 0: a result, reported as a run that did not train" in capsys.readouterr().out
  failing = sweep.plan(str(tmp_path / "other"), sweep.parse_sweep("model.use_lrn=False"), seeds=1)
  monkeypatch.setattr(sweep.Run, "command", lambda self, spec, overrides: [sys.executable, "-c", "raise SystemExit(1)"])
  with pytest.raises(RuntimeError, match="1 run\\(s\\) failed"):
    sweep.execute(failing, "configs/alexnet.py:smoke", [], parallel=1, gpus=0)
