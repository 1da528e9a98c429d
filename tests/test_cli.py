"""Every command line (`python -m ...`): --help exits 0 and says how to use the command; a bad flag still
fails."""

import subprocess
import sys

import pytest

from conftest import REPO

COMMANDS = [
  "alexnet_jax.main",
  "alexnet_jax.ablate",
  "alexnet_jax.data.prepare",
  "alexnet_jax.data.stats",
  "alexnet_jax.tools.predict",
  "alexnet_jax.tools.figures",
  "experiments.benchmark",
  "experiments.benchmark.report",
  "experiments.planted_bugs",
  "experiments.record_reads",
  "experiments.shm_cost",
  "experiments.study",
  "experiments.study.geometry",
]


@pytest.mark.parametrize("module", COMMANDS)
def test_help_exits_zero(module):
  result = subprocess.run(
    [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "flags:" in result.stdout + result.stderr or "options:" in result.stdout  # absl's help, or argparse's
  bad = subprocess.run(
    [sys.executable, "-m", module, "--no_such_flag=1"], capture_output=True, text=True, timeout=120, cwd=REPO
  )
  assert bad.returncode not in (0, None)


def test_main_help_suggests_only_flags_that_parse():
  """The docstring's multi-process advice: every --flag it names with a value parses as written."""
  result = subprocess.run(
    [sys.executable, "-m", "alexnet_jax.main", "--help"], capture_output=True, text=True, timeout=120, cwd=REPO
  )
  assert "--distributed " in result.stdout and "--distributed=auto" not in result.stdout
  parsed = subprocess.run(
    [
      sys.executable,
      "-c",
      "import sys; from alexnet_jax import main; "
      "main.FLAGS(['x', '--distributed', '--config=configs/alexnet.py:smoke', '--workdir=/x']); "
      "print(main.FLAGS.distributed)",
    ],
    capture_output=True,
    text=True,
    timeout=120,
    cwd=REPO,
  )
  assert parsed.stdout.strip() == "True", parsed.stderr[-2000:]
