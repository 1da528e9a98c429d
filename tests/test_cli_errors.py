"""Bad input to the command lines: one line that says what is wrong and what to do, no traceback, and
nothing written."""

import subprocess
import sys

import pytest

from alexnet_jax.tools import predict
from conftest import REPO
from experiments import planted_bugs


def run(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def assert_one_error_line(result, status, *phrases):
  assert result.returncode == status, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
  for phrase in phrases:
    assert phrase in lines[0]


@pytest.mark.parametrize("extra", [[], ["--config.optim.schedule=cosine"]])
def test_a_missing_config_file_is_one_line(tmp_path, extra):
  """With or without overrides (which ml_collections would call unknown flags), the file is named."""
  workdir = tmp_path / "work"
  result = run("alexnet_jax.main", "--config=configs/nope.py", f"--workdir={workdir}", *extra)
  assert_one_error_line(result, 2, "--config: 'configs/nope.py'", "does not exist", "--config=configs/alexnet.py:smoke")
  assert not workdir.exists()


def test_a_folder_as_config_file_is_one_line(tmp_path):
  result = run("alexnet_jax.main", "--config=configs", f"--workdir={tmp_path / 'work'}")
  assert_one_error_line(result, 2, "'configs'", "is a folder")
  assert not (tmp_path / "work").exists()


def test_an_unknown_schedule_names_the_schedules_and_the_flag_before_anything_is_written(tmp_path):
  workdir, data_dir = tmp_path / "work", tmp_path / "data"
  result = run(
    "alexnet_jax.main",
    "--config=configs/alexnet.py:smoke",
    f"--workdir={workdir}",
    f"--config.dataset.data_dir={data_dir}",
    "--config.optim.schedule=linear",
  )
  assert_one_error_line(
    result,
    2,
    "optim.schedule='linear' is not one of ['plateau', 'step', 'cosine', 'constant']",
    "--config.optim.schedule=plateau",
  )
  assert not workdir.exists() and not data_dir.exists()


def test_a_stray_argument_is_one_line(tmp_path):
  result = run("alexnet_jax.main", "--config=configs/alexnet.py:smoke", f"--workdir={tmp_path / 'work'}", "smoke")
  assert_one_error_line(result, 2, "unexpected arguments ['smoke']", "everything is a flag")
  assert not (tmp_path / "work").exists()


def test_unreadable_class_names_are_a_value_error(tmp_path):
  with pytest.raises(ValueError, match=r"Cannot read the class names in '.*nothing.txt' \(No such file"):
    predict.class_names(str(tmp_path / "nothing.txt"), 3)
  (tmp_path / "names.txt").write_text("cat\ndog\n")
  with pytest.raises(ValueError, match="names 2 classes; the weights have 3"):
    predict.class_names(str(tmp_path / "names.txt"), 3)
  assert predict.class_names("", 2) == ["class 0", "class 1"]


def test_record_reads_on_a_folder_without_the_dataset_is_one_line(tmp_path):
  result = run("experiments.record_reads", f"--data_dir={tmp_path}")
  assert_one_error_line(result, 1, "No prepared dataset 'imagenette2_128'", "python -m alexnet_jax.data.prepare")


def test_every_planted_bug_still_matches_the_code():
  """A mutation whose file moved or whose line changed would stop the planted-bug pass: each must name
  files that exist and a text found exactly once."""
  assert [p for p in map(planted_bugs.mismatch, planted_bugs.MUTATIONS) if p] == []
  moved = planted_bugs.Mutation("moved", "alexnet_jax/lrn.py", "x", "y", ("tests/test_lrn.py",))
  assert "['alexnet_jax/lrn.py'] do(es) not exist" in planted_bugs.mismatch(moved)
  twice = planted_bugs.Mutation("twice", "alexnet_jax/cli.py", "import", "x", ("tests/test_cli.py",))
  assert "occurs" in planted_bugs.mismatch(twice) and "(expected once)" in planted_bugs.mismatch(twice)
