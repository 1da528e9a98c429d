"""The repository speaks for itself: no file points at a folder outside it, at a design note it does not ship,
or at the tracker's issue numbers. The committed runs' own records (config.json, summary.json, metrics.jsonl)
are read too: a run records its config, and a config that named a local folder would carry it into them."""

import pathlib
import re
import subprocess

import pytest

from conftest import REPO

FORBIDDEN = {
  "a folder outside the repository": re.compile(r"\.\./shared|shared/datasets|shared/tools"),
  "a design note the repository does not ship": re.compile(r"DESIGN\.md"),
  "an issue number": re.compile(r"\bissues? #?\d+|(?<![\w&/])#\d{1,3}\b", re.I),
}
THIS_FILE = "tests/test_repository_text.py"  # its examples spell out what it looks for


def tracked_text_files():
  names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
  for name in names:
    path = REPO / name
    if name == THIS_FILE or not path.is_file() or path.suffix in {".png", ".npy", ".jpg"}:
      continue
    try:
      yield name, path.read_text()
    except UnicodeDecodeError:
      continue


def test_no_file_points_outside_the_repository_or_at_the_tracker():
  found = [
    f"{name}:{text[: m.start()].count(chr(10)) + 1}: {what} ({m.group(0)!r})"
    for name, text in tracked_text_files()
    for what, pattern in FORBIDDEN.items()
    for m in pattern.finditer(text)
  ]
  assert found == []


@pytest.mark.parametrize(
  "line,caught",
  [
    ("prepare it from " + "../" + "shared/datasets/imagenette2-128", True),  # assembled: not named here either
    ("see DESIGN.md section 2", True),
    ("fixed in issue #17", True),
    ("as issue 38 asks", True),
    ("(#21)", True),
    ("the 2x2 pooling of section 3.4; color #fff", False),
    ("shared memory slots; a shared file system", False),
  ],
)
def test_the_patterns_catch_what_they_are_for(line, caught):
  assert any(p.search(line) for p in FORBIDDEN.values()) is caught


def test_the_committed_run_records_are_among_the_files_read():
  read = {name for name, _ in tracked_text_files()}
  assert {"README.md", "experiments/results/study/runs/baseline/seed0/config.json"} <= read
  assert "experiments/results/study_imagewoof/runs/baseline/seed0/summary.json" in read


# A path in the repository as code and the README name it: alexnet_jax/..., experiments/..., configs/..., tests/...
CITED_PATH = re.compile(r"(?<![\w/.{}-])((?:alexnet_jax|experiments|configs|tests|\.ci)/[\w./-]*\w)")


def cited_paths_missing(texts, tracked) -> list:
  """'file: path' for each path a text names that is neither a tracked file nor a folder holding one."""
  folders = {str(p) for name in tracked for p in pathlib.PurePosixPath(name).parents}
  return [
    f"{name}: {m.group(1)}"
    for name, text in texts
    for m in CITED_PATH.finditer(text)
    if m.group(1) not in tracked and m.group(1) not in folders
  ]


def test_the_code_and_the_readme_cite_only_files_the_repository_ships():
  tracked = set(subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split())
  code = [
    (name, text)
    for name, text in tracked_text_files()
    if name == "README.md"
    or (name.endswith(".py") and name.split("/")[0] in {"alexnet_jax", "configs", "experiments"})
    and "results" not in name.split("/")
  ]
  assert len(code) > 50
  assert cited_paths_missing(code, tracked) == []


def test_the_cited_path_check_finds_a_path_that_is_not_there():
  tracked = {"alexnet_jax/model/lrn.py", "experiments/results/study/README.md"}
  texts = [("a.py", "see alexnet_jax/model/lrn.py, experiments/results/study/ and alexnet_jax/lrn.py.")]
  assert cited_paths_missing(texts, tracked) == ["a.py: alexnet_jax/lrn.py"]
