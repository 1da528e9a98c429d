"""Paths: where the repository and its config file are, and user-given folders, checked one way everywhere."""

import os

# The checkout the package runs from (an editable install): configs/ beside alexnet_jax/.
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILE = os.path.join(REPOSITORY, "configs", "alexnet.py")  # its defaults complete older runs' configs


def absolute(path: str) -> str:
  """A user-given path with `~` expanded (a shell leaves `--flag=~/x` as it is) and made absolute."""
  return os.path.abspath(os.path.expanduser(path))


def file_in_the_way(path: str) -> bool:
  """True when `path` exists and is not a folder, where a folder is wanted (a data_dir or a workdir;
  both are created when missing)."""
  return os.path.exists(path) and not os.path.isdir(path)
