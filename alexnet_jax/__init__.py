"""alexnet_jax: a faithful, fast JAX/Flax reproduction of AlexNet (Krizhevsky et al., 2012).

Importing the package has no side effects: submodules are imported where they are used
(`from alexnet_jax import models, steps`).
"""

__version__ = "0.1.0"
