"""Today's code reproduces the committed study: baseline seed 0 of `configs/alexnet.py:study`, rerun for its
first two log intervals (98 steps), logs every training value the committed run logged, bit for bit.

Needs Imagenette prepared where the study config reads it (its not-prepared message gives the command);
skipped without it. The run is a real `python -m alexnet_jax.main` on one CPU device, as the study's runs
were made, stopped by SIGTERM once step 98 is logged (the stop step's own record is not compared).
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from alexnet_jax.data import sources
from test_configs import cfg

REPO = pathlib.Path(__file__).resolve().parents[1]
COMMITTED = REPO / "experiments" / "results" / "study" / "runs" / "baseline" / "seed0"
COMPARED_STEPS = (49, 98)  # log_every_steps = 49: the first two training records


def train_records(path, steps):
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return {r["step"]: r for r in records if r["kind"] == "train" and r["step"] in steps}


def study_data_is_prepared() -> bool:
  config = cfg.get_config("study")
  try:
    sources.dataset_info(os.path.expanduser(config.dataset.data_dir), config.dataset.name)
  except sources.DatasetError:
    return False
  return True


def single_device_environment():
  """The test session's environment less its 8 virtual devices: the study ran on one CPU device."""
  env = dict(os.environ)
  flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "").strip()
  if flags:
    env["XLA_FLAGS"] = flags
  else:
    env.pop("XLA_FLAGS", None)
  return env


@pytest.mark.slow
@pytest.mark.skipif(not study_data_is_prepared(), reason="Imagenette is not prepared (see configs/alexnet.py)")
def test_the_committed_baseline_is_reproduced_bit_for_bit(tmp_path):
  workdir = tmp_path / "baseline_seed0"
  command = [sys.executable, "-m", "alexnet_jax.main", "--config=configs/alexnet.py:study", f"--workdir={workdir}"]
  process = subprocess.Popen(
    command, cwd=REPO, env=single_device_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
  )
  metrics = workdir / "metrics.jsonl"
  try:
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
      if metrics.exists() and max(COMPARED_STEPS) in train_records(metrics, COMPARED_STEPS):
        break
      time.sleep(0.5)
    process.send_signal(signal.SIGTERM)  # checkpoint at the next step and stop
    _, stderr = process.communicate(timeout=300)
  finally:
    process.kill()
  assert metrics.exists(), stderr.decode()[-3000:]
  got = train_records(metrics, COMPARED_STEPS)
  want = train_records(COMMITTED / "metrics.jsonl", COMPARED_STEPS)
  assert sorted(want) == list(COMPARED_STEPS) and sorted(got) == sorted(want), stderr.decode()[-3000:]
  for step in COMPARED_STEPS:
    assert got[step] == want[step], f"step {step}: {got[step]} != committed {want[step]}"
