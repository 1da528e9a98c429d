"""Helpers for `get_config(arg)`: named variants plus `key=value` overrides, checked before anything runs."""

import ast
import copy
import importlib.util
import os
from typing import Callable, Dict, Mapping

import ml_collections


class ConfigError(ValueError):
  """A config argument or override that cannot apply: unknown key, wrong type, unknown variant."""


# Keys whose behaviour before they existed differs from today's default: a stored config (a run's
# config.json) that lacks one was made with this value. Other missing keys had their default's behaviour.
VALUES_BEFORE_THE_KEY = {"model.dropout_placement": "fc6_fc7_inputs", "model.dropout_scaling": "in_training"}


def as_made(stored: dict) -> dict:
  """A copy of a stored config (JSON dict) with VALUES_BEFORE_THE_KEY filled in where it lacks them."""
  made = copy.deepcopy(stored)
  for path, value in VALUES_BEFORE_THE_KEY.items():
    *parents, leaf = path.split(".")
    node = made
    for part in parents:
      node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
      node.setdefault(leaf, value)
  return made


def parse_value(text: str):
  """'False' -> False, '0.1' -> 0.1, '(1,2)' -> (1, 2); anything else stays a string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def set_path(config: ml_collections.ConfigDict, path: str, value) -> None:
  """Sets config.<path> = value, raising ConfigError on an unknown key or a value of the wrong type."""
  *parents, leaf = path.split(".")
  node = config
  for i, part in enumerate(parents):
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise ConfigError(f"Unknown config key {'.'.join(parents[: i + 1])!r} (in {path!r}).")
    node = node[part]
  if leaf not in node:
    raise ConfigError(f"Unknown config key {path!r}. Known keys here: {sorted(node.keys())}.")
  old = node[leaf]
  if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if (
    old is not None
    and not isinstance(value, type(old))
    and not (isinstance(old, (tuple, list)) and isinstance(value, (tuple, list)))
  ):
    raise ConfigError(
      f"Config key {path!r} is a {type(old).__name__} ({old!r}); got {value!r} ({type(value).__name__})."
    )
  node[leaf] = value


def apply_arg(
  config: ml_collections.ConfigDict, arg: str, *, variants: Mapping[str, Callable], aliases: Dict[str, str]
) -> ml_collections.ConfigDict:
  """`arg` = 'variant', 'key=value,key=value' or both, comma-separated in any order: the variants apply first,
  in their order, then the key=value overrides, so an override always wins over a variant's value."""
  tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
  names = [t for t in tokens if "=" not in t]
  for name in names:
    if name not in variants:
      raise ConfigError(f"Unknown config variant {name!r}: expected one of {sorted(variants)} or key=value.")
  for name in names:
    variants[name](config)
  for key, value in (t.split("=", 1) for t in tokens if "=" in t):
    set_path(config, aliases.get(key.strip(), key.strip()), parse_value(value.strip()))
  return config


def config_module(path: str):
  """The config file at `path` as a module (its `get_config`), loaded the way ml_collections loads it."""
  if not os.path.isfile(path):
    raise ConfigError(f"Config file {path!r} does not exist.")
  spec = importlib.util.spec_from_file_location("alexnet_jax_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`get_config(arg)` of 'path/to/config.py[:arg]', as `--config=` gives it to main."""
  path, _, arg = spec.partition(":")
  return config_module(path).get_config(arg or None)
