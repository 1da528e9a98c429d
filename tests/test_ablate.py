"""The ablation runner: a 2x2 sweep with 1 seed on the smoke config, its files, and skipping on re-run."""

import csv
import os
import subprocess
import sys

import pytest

from alexnet_jax import ablate, configlib

from conftest import REPO


def test_sweep_parsing_and_validation():
  axes = ablate.parse_sweep(ablate.DEFAULT_SWEEP)
  assert axes == [("model.use_lrn", [True, False]), ("model.overlapping_pool", [True, False])]
  points = ablate.grid(axes)
  assert len(points) == 4 and points[0] == {"model.use_lrn": True, "model.overlapping_pool": True}
  assert ablate.run_name(points[3]) == "use_lrn=False,overlapping_pool=False"
  with pytest.raises(configlib.ConfigError, match="Unknown config key 'model.use_lrm'"):
    ablate.validate(f"{REPO}/configs/alexnet.py:smoke", ablate.parse_sweep("model.use_lrm=True,False"), [])
  with pytest.raises(configlib.ConfigError, match="is a bool"):
    ablate.validate(f"{REPO}/configs/alexnet.py:smoke", ablate.parse_sweep("model.use_lrn=yes,no"), [])


@pytest.mark.slow
def test_two_by_two_sweep_writes_results_and_skips_finished_runs(tmp_path, synthetic_data_dir):
  workdir = tmp_path / "sweep"
  sets = [f"dataset.data_dir={synthetic_data_dir}", "dataset.num_workers=0", "dataset.auto_prepare=False",
          "model.width_multiplier=0.125", "batch_size=16", "num_train_steps=50", "eval_every_epochs=1.0",
          "log_every_steps=25", "progress_bar=False"]
  command = [sys.executable, "-m", "alexnet_jax.ablate", f"--config={REPO}/configs/alexnet.py:smoke",
             f"--workdir={workdir}", "--seeds=1"] + [f"--set={s}" for s in sets]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  result = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  for name in ("results.csv", "results.md", "curves.png", "ablation.png"):
    assert (workdir / name).stat().st_size > 0, name
  with open(workdir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4
  assert rows[0]["config"] == "use_lrn=True,overlapping_pool=True"  # the baseline first
  assert float(rows[0]["eval/top1_error diff"]) == 0.0
  lrn_off = next(r for r in rows if r["config"] == "use_lrn=False,overlapping_pool=True")
  assert lrn_off["paper effect top1/top5"] == "+1.4/+1.2"
  table = (workdir / "results.md").read_text()
  assert table.count("| use_lrn=") == 4
  summaries = {p: p.stat().st_mtime for p in workdir.glob("runs/*/seed0/summary.json")}
  assert len(summaries) == 4

  again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("skip ") == 4 and "run  " not in again.stdout
  assert {p: p.stat().st_mtime for p in summaries} == summaries
