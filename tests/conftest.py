"""Test settings: 8 virtual CPU devices (set before JAX initialises) so pmap paths run as they would on a
multi-GPU host, a compilation cache shared by the test run's commands, and a `slow` marker for end-to-end tests
(they still run in CI)."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

# One persistent XLA compilation cache for the test run, which every `python -m alexnet_jax.main` the tests
# start inherits: the end-to-end runs compile the same small programs again and again, and compiling is
# most of such a run's time. Loaded programs are the ones compiled, so no result changes.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="alexnet_jax_tests_xla_cache_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

import pathlib  # noqa: E402

import pytest  # noqa: E402

from alexnet_jax import configlib  # noqa: E402
from alexnet_jax.data import prepare, sources  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
STUDY_CONFIG = f"{REPO / 'configs' / 'alexnet.py'}:study"


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
  """A small prepared synthetic_shapes (400 train / 100 val, 72 px), shared by the tests of a run."""
  data_dir = tmp_path_factory.mktemp("synthetic_data")
  prepare.prepare_synthetic(str(data_dir), train_size=400, val_size=100, image_size=72, seed=0)
  return str(data_dir)


def study_imagenette():
  """(data_dir, name) of the Imagenette the study config reads, or a skip naming the command that prepares it."""
  dataset = configlib.load_config(STUDY_CONFIG).dataset
  try:
    sources.find_prepared(dataset.data_dir, dataset.name)
  except sources.DatasetNotPrepared:
    command = prepare.command_for(dataset.name, dataset.data_dir, dataset.prepare_args)
    pytest.skip(f"{dataset.name} is not prepared in {dataset.data_dir}: {command}")
  return dataset.data_dir, dataset.name


@pytest.fixture(scope="session")
def imagenette_subset_dir(tmp_path_factory):
  """300 images of the study's prepared Imagenette (150 per split, spread over the classes), stored as they
  are (128 px JPEGs) as the dataset `imagenette_subset`."""
  data_dir, name = study_imagenette()
  subset_dir = tmp_path_factory.mktemp("imagenette_data")
  prepare.prepare_subset(data_dir, name, str(subset_dir), name="imagenette_subset", per_split=150)
  return str(subset_dir)
