"""The README's commands and snippets run as written: every `python -m` command's module answers --help,
accepts each flag the README gives it, and loads its --config; every name its Python snippets import or
call on an imported module exists."""

import ast
import functools
import re
import shlex
import subprocess
import sys

import pytest

from alexnet_jax import configlib
from conftest import REPO

README = (REPO / "README.md").read_text()


def blocks(language: str):
  return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def commands():
  """Each `.venv/bin/python -m MODULE ...` of the README's bash blocks, as an argument list."""
  found = []
  for block in blocks("bash"):
    for line in block.replace("\\\n", " ").splitlines():
      for part in line.split("&&"):
        words = shlex.split(part.split("#")[0])
        if words[:2] == [".venv/bin/python", "-m"] and words[2] != "pytest":
          found.append(words[2:])
  return found


@functools.lru_cache(maxsize=None)
def helpfull(module: str) -> str:
  result = subprocess.run(
    [sys.executable, "-m", module, "--helpfull"], capture_output=True, text=True, timeout=300, cwd=REPO
  )
  assert result.returncode == 0, f"{module} --helpfull: {result.stderr[-2000:]}"
  return result.stdout + result.stderr


def test_the_readme_has_the_commands_a_user_needs():
  modules = {c[0] for c in commands()}
  assert {"alexnet_jax.main", "alexnet_jax.ablate", "alexnet_jax.data.prepare", "alexnet_jax.tools.predict"} <= modules
  # A guide, not a report: the measurements live in the results READMEs. The 20 words under 1500 are slack
  # for the generated findings block, whose wording follows its generating code.
  assert len(README.split()) <= 1500 - 20


@pytest.mark.parametrize("command", commands(), ids=lambda c: " ".join(c)[:60])
def test_each_command_runs_as_written(command):
  module, args = command[0], command[1:]
  known = helpfull(module)
  for arg in (a for a in args if a.startswith("--")):
    name, _, value = arg[2:].partition("=")
    if name.startswith("config."):  # a config key: it must exist and take the value
      configlib.set_path(
        configlib.load_config("configs/alexnet.py"), name[len("config.") :], configlib.parse_value(value)
      )
      continue
    assert re.search(rf"--(\[no\])?{re.escape(name)}:", known), f"{module} has no flag --{name}"
    if name == "config":
      configlib.load_config(str(REPO / value) if not value.startswith("/") else value)


@pytest.mark.parametrize("variant", ["imagenette", "imagewoof"])
def test_the_data_commands_are_the_configs_own(variant):
  """The README prepares each dataset with the command its config names when the data is missing."""
  config = configlib.load_config(f"configs/alexnet.py:{variant}")
  prepared = [c for c in commands() if c[0] == "alexnet_jax.data.prepare" and f"--name={config.dataset.name}" in c]
  assert [c[1:-1] for c in prepared] == [shlex.split(config.dataset.prepare_args)]
  assert prepared[0][-1] == f"--data_dir={config.dataset.data_dir}"


def snippet_names():
  """(module, attribute) for each `module.attribute` the Python snippets use on a module they import."""
  pairs, imported = [], {}  # a snippet may use what an earlier one imported
  for block in blocks("python"):
    tree = ast.parse(block)
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module.startswith("alexnet_jax"):
        imported |= {alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names}
    pairs += [
      (imported[node.value.id], node.attr)
      for node in ast.walk(tree)
      if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
    ]
  return pairs


def test_the_python_snippets_name_what_exists():
  pairs = snippet_names()
  assert ("alexnet_jax.steps", "pmap_train_step") in pairs and ("alexnet_jax.steps", "sharded_train_step") in pairs
  for module, attribute in pairs:
    package, _, name = module.rpartition(".")
    target = getattr(__import__(package, fromlist=[name]), name)
    assert hasattr(target, attribute), f"{module} has no {attribute}"
