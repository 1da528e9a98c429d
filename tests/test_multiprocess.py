"""Two processes x 2 CPU devices (gloo collectives on localhost) train exactly like 1 process x 4 devices,
preparing the embedded dataset together on first use, and a killed peer makes the survivor exit with an
error in bounded time instead of hanging."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO
from test_train import final_params, records, wait_for

CONFIG = f"{REPO}/configs/alexnet.py:smoke"


def unused_port() -> int:
  """A TCP port free on localhost now (the kernel picks it) for the JAX coordinator."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def deterministic_flags(data_dir, steps=8, auto_prepare=False):
  """No randomness that depends on which device sees an example (dropout, crops, flips, lighting), so the
  two layouts see the same global batches and must reach the same parameters."""
  flags = {
    "dataset.data_dir": data_dir,
    "dataset.num_workers": 0,
    "dataset.auto_prepare": auto_prepare,
    "model.width_multiplier": 0.125,
    "model.dropout_rate": 0.0,
    "augment.crop_size": 72,
    "augment.flip": False,
    "augment.pca_std": 0.0,
    "batch_size": 16,
    "optim.schedule": "constant",
    "num_train_steps": steps,
    "checkpoint_every_steps": 4,
    "log_every_steps": 2,
    "eval_every_epochs": 100.0,
    "augment.final_eval_views": "center",
    "progress_bar": False,
  }
  return [f"--config.{k}={v}" for k, v in flags.items()]


def launch(workdir, flags, *, devices, process_id=None, num_processes=None, port=None, heartbeat=None):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
  command = [sys.executable, "-m", "alexnet_jax.main", f"--config={CONFIG}", f"--workdir={workdir}"] + flags
  if num_processes:
    command += [
      f"--coordinator_address=localhost:{port}",
      f"--num_processes={num_processes}",
      f"--process_id={process_id}",
    ]
  if heartbeat:
    command += [f"--heartbeat_timeout_s={heartbeat}"]
  return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def two_processes(workdir, flags):
  """Runs both processes of a 2 x 2-device run to the end; their (stdout, stderr)."""
  port = unused_port()
  workers = [launch(workdir, flags, devices=2, process_id=i, num_processes=2, port=port) for i in range(2)]
  outputs = [w.communicate(timeout=600) for w in workers]
  for w, (out, err) in zip(workers, outputs):
    assert w.returncode == 0, err[-3000:]
  return outputs


@pytest.mark.slow
def test_two_processes_stopped_and_resumed_equal_one_process_with_as_many_devices(tmp_path):
  """The two-process run starts from an empty data_dir: both processes find the embedded dataset missing
  at once and prepare it together into one folder. It stops at step 4 and a second launch resumes it to 8
  (the checkpoint written by process 0, read by both, and each process's data position); a one-process
  run on 4 devices goes straight to 8 on the same data."""
  shared_data = tmp_path / "data_multi"
  outputs = two_processes(tmp_path / "multi", deterministic_flags(shared_data, steps=4, auto_prepare=True))
  assert sorted(p.name for p in shared_data.iterdir()) == ["synthetic_shapes"]  # one copy, no staging left
  assert "2 process(es)" in outputs[0][1]
  resumed = two_processes(tmp_path / "multi", deterministic_flags(shared_data, steps=8))
  for _, err in resumed:
    assert "Resumed from the checkpoint at step 4" in err, err[-3000:]

  single = launch(tmp_path / "single", deterministic_flags(shared_data), devices=4)
  out, err = single.communicate(timeout=600)
  assert single.returncode == 0, err[-3000:]

  import jax

  a, b = final_params(tmp_path / "single", 8), final_params(tmp_path / "multi", 8)
  for (path, x), (_, y) in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-5, atol=1e-6, err_msg=str(path))
  single_loss = [r["train/loss"] for r in records(tmp_path / "single", ("train",))]
  multi_loss = [r["train/loss"] for r in records(tmp_path / "multi", ("train",))]
  np.testing.assert_allclose(multi_loss, single_loss, rtol=1e-5)  # written once, by process 0


@pytest.mark.slow
def test_a_killed_peer_fails_the_survivor_in_bounded_time(tmp_path, synthetic_data_dir):
  port = unused_port()
  flags = deterministic_flags(synthetic_data_dir, steps=100000)
  workers = [
    launch(tmp_path / "multi", flags, devices=2, process_id=i, num_processes=2, port=port, heartbeat=10)
    for i in range(2)
  ]
  try:
    wait_for(
      lambda: (tmp_path / "multi" / "metrics.jsonl").exists() and len(records(tmp_path / "multi")) >= 2,
      300,
      "both processes training",
    )
    workers[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    out, err = workers[0].communicate(timeout=180)
    elapsed = time.time() - killed_at
  finally:
    for w in workers:
      w.kill()
  assert workers[0].returncode != 0
  assert elapsed < 120, elapsed  # a 10 s heartbeat: the survivor stops in bounded time, never hangs
  # JAX's coordination service names the cause: the peer stopped sending heartbeats.
  assert "heartbeat" in err and "another task died" in err, err[-3000:]
