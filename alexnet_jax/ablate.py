"""`python -m alexnet_jax.ablate`: ablation sweeps in one command (the code is alexnet_jax.analysis.ablate)."""

from absl import flags

from alexnet_jax import cli
from alexnet_jax.analysis import ablate

if __name__ == "__main__":
  __doc__ = ablate.__doc__  # --help shows the sweep's own usage and flags
  ablate.define_flags()
  flags.adopt_module_key_flags(ablate)
  cli.run(ablate.main)
