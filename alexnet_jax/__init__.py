"""alexnet_jax: a faithful, fast JAX/Flax reproduction of AlexNet (Krizhevsky et al., 2012).

The library is `model` (the network), `data` (input pipeline and augmentation) and `training` (steps,
optimiser, loop); `tools` and `analysis` use it, never the other way round. Importing the package has no
side effects: `from alexnet_jax import steps` (the reusable train step, `alexnet_jax.training.steps`) is
resolved when asked for.
"""

import importlib

__version__ = "0.1.0"

_SHORTCUTS = {"steps": "alexnet_jax.training.steps"}


def __getattr__(name):
  if name in _SHORTCUTS:
    return importlib.import_module(_SHORTCUTS[name])
  raise AttributeError(f"module 'alexnet_jax' has no attribute {name!r}")
