"""An AlexNet from a config's `model` section (configs/alexnet.py): the one place a config becomes a module.

Training, the tools and the benchmarks all build their network here, so a key added to the config reaches
every one of them.
"""

import jax.numpy as jnp
import ml_collections

from alexnet_jax.model import models


def from_config(m: ml_collections.ConfigDict) -> models.AlexNet:
  """The AlexNet that config section `m` describes.

  Args:
    m: a config's `model` section.

  Returns:
    The module; `auto` implementations resolve on the backend it runs on (models.BACKEND_DEFAULTS).

  Raises:
    models.ChoiceError: a choice field outside models.CHOICES.
  """
  return models.AlexNet(
    preset=m.preset,
    num_classes=m.num_classes,
    use_lrn=m.use_lrn,
    lrn_per_tower=m.lrn_per_tower,
    overlapping_pool=m.overlapping_pool,
    dropout_rate=m.dropout_rate,
    dropout_placement=m.dropout_placement,
    dropout_scaling=m.dropout_scaling,
    activation=m.activation,
    lrn_alpha=m.lrn_alpha,
    lrn_k=m.lrn_k,
    width_multiplier=m.width_multiplier,
    init_scheme=m.init_scheme,
    tower_impl=m.tower_impl,
    pool_impl=m.pool_impl,
    conv1_impl=m.conv1_impl,
    lrn_impl=m.lrn_impl,
    dtype=jnp.dtype(m.dtype),
    param_dtype=jnp.dtype(m.param_dtype),
  )
