"""Today's code reproduces the committed study: baseline seed 0 of `configs/alexnet.py:study`, rerun for its
first two log intervals (98 steps), logs every training value the committed run logged, bit for bit.

It needs the very data the runs read: Imagenette prepared where the study config reads it, from the public
128 px copies the study report names, whose record files hash to provenance.json's `data_sha256`. A copy
made another way (the config's TFDS command) differs pixel for pixel, so the test is skipped there, with the
reason. The run is a real `python -m alexnet_jax.main` on one CPU device, as the study's runs were made,
stopped by SIGTERM once step 98 is logged (the stop step's own record is not compared).
"""

import glob
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from alexnet_jax.data import sources
from conftest import study_imagenette

REPO = pathlib.Path(__file__).resolve().parents[1]
COMMITTED = REPO / "experiments" / "results" / "study" / "runs" / "baseline" / "seed0"
PROVENANCE = REPO / "experiments" / "results" / "study" / "provenance.json"
COMPARED_STEPS = (49, 98)  # log_every_steps = 49: the first two training records


def train_records(path, steps):
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return {r["step"]: r for r in records if r["kind"] == "train" and r["step"] in steps}


def data_the_runs_read(data_dir: str, name: str):
  """None where the prepared copy's record files hash to what the committed runs read, else why not."""
  with open(PROVENANCE) as f:
    expected = json.load(f)["data_sha256"]
  folder = sources.find_prepared(data_dir, name)
  for split, digest in expected.items():
    (path,) = glob.glob(os.path.join(folder, f"{name}-{split}.array_record-*"))
    with open(path, "rb") as f:
      if hashlib.sha256(f.read()).hexdigest() != digest:
        return f"the prepared {name} {split} split is not the copy the committed runs read ({path})"
  return None


def single_device_environment():
  """The test run's environment less its 8 virtual devices: the study ran on one CPU device."""
  env = dict(os.environ)
  flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "").strip()
  if flags:
    env["XLA_FLAGS"] = flags
  else:
    env.pop("XLA_FLAGS", None)
  return env


@pytest.mark.slow
def test_the_committed_baseline_is_reproduced_bit_for_bit(tmp_path):
  data_dir, name = study_imagenette()  # skips, naming the command, where it is not prepared
  different = data_the_runs_read(os.path.expanduser(data_dir), name)
  if different:
    pytest.skip(different)
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
