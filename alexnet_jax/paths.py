"""User-given paths, checked one way everywhere."""

import os


def file_in_the_way(path: str) -> bool:
  """True when `path` exists and is not a folder, where a folder is wanted (a data_dir or a workdir;
  both are created when missing)."""
  return os.path.exists(path) and not os.path.isdir(path)
