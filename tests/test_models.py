"""AlexNet presets: shapes, the 55/27/13/6 geometry, exact parameter counts, init, dropout, bf16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.model import models
from alexnet_jax.model.models import AlexNet, param_count


def init_shapes(model, size):
  """Parameter shapes and sown intermediates without running any FLOPs (eval_shape)."""
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)

  def run(rng, x):
    variables = model.init(rng, x, train=False)
    logits, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    return variables["params"], logits, state["intermediates"]

  return jax.eval_shape(run, jax.random.key(0), x)


# Worked out by hand from section 3.5 (kernel_h * kernel_w * inputs_per_tower * outputs + outputs):
#   conv1 11*11*3*96+96 = 34,944           conv2 5*5*48*256+256 = 307,456 (two towers: 48 inputs each)
#   conv3 3*3*256*384+384 = 885,120        conv4 3*3*192*384+384 = 663,936
#   conv5 3*3*192*256+256 = 442,624        fc6 9216*4096+4096 = 37,752,832
#   fc7 4096*4096+4096 = 16,781,312        fc8 4096*1000+1000 = 4,097,000
PAPER_PARAMS = 60_965_224
# One tower: conv2 5*5*96*256+256 = 614,656, conv4 3*3*384*384+384 = 1,327,488,
# conv5 3*3*384*256+256 = 884,992 instead.
ONE_TOWER_PARAMS = PAPER_PARAMS + (614_656 - 307_456) + (1_327_488 - 663_936) + (884_992 - 442_624)
TORCHVISION_ALEXNET_PARAMS = 61_100_840  # sum(p.numel() for p in torchvision.models.alexnet().parameters())


@pytest.mark.parametrize(
  "preset,expected", [("paper", PAPER_PARAMS), ("one_tower", ONE_TOWER_PARAMS), ("owt", TORCHVISION_ALEXNET_PARAMS)]
)
def test_exact_parameter_counts(preset, expected):
  model = AlexNet(preset=preset, num_classes=1000)
  params, logits, _ = init_shapes(model, models.canonical_image_size(preset))
  assert param_count(params) == expected
  assert logits.shape == (1, 1000) and logits.dtype == jnp.float32


def test_paper_layer_shapes():
  params, _, _ = init_shapes(AlexNet(preset="paper"), 227)
  shapes = {name: layer["kernel"].shape for name, layer in params.items()}
  assert shapes == {
    "conv1": (11, 11, 3, 96),
    "conv2": (5, 5, 48, 256),
    "conv3": (3, 3, 256, 384),
    "conv4": (3, 3, 192, 384),
    "conv5": (3, 3, 192, 256),
    "fc6": (9216, 4096),
    "fc7": (4096, 4096),
    "fc8": (4096, 1000),
  }


@pytest.mark.parametrize("preset", ["paper", "one_tower", "owt"])
@pytest.mark.parametrize("overlapping_pool", [True, False])
def test_intermediate_sizes(preset, overlapping_pool):
  model = AlexNet(preset=preset, overlapping_pool=overlapping_pool)
  _, _, inter = init_shapes(model, models.canonical_image_size(preset))
  sides = {name: value[0].shape[1] for name, value in inter.items() if name not in ("relu6", "relu7")}
  assert sides == {
    "relu1": 55,
    "pool1": 27,
    "relu2": 27,
    "pool2": 13,
    "relu3": 13,
    "relu4": 13,
    "relu5": 13,
    "pool5": 6,
  }
  assert inter["pool5"][0].shape[1:] == (6, 6, 256)
  assert inter["relu6"][0].shape == inter["relu7"][0].shape == (1, 4096)


@pytest.mark.parametrize("num_classes", [10, 1000])
def test_output_shapes_per_preset(num_classes):
  for preset in models.PRESETS:
    _, logits, _ = init_shapes(AlexNet(preset=preset, num_classes=num_classes), models.canonical_image_size(preset))
    assert logits.shape == (1, num_classes)


def tiny(**kwargs):
  defaults = dict(preset="paper", num_classes=7, width_multiplier=0.125)
  defaults.update(kwargs)
  return AlexNet(**defaults)


def test_paper_initialisation():
  """Section 5: weights N(0, 0.01); bias 1 on conv2, conv4, conv5, fc6, fc7; 0 on conv1, conv3, fc8."""
  params = AlexNet(preset="paper", num_classes=1000).init(jax.random.key(0), jnp.zeros((1, 227, 227, 3)), train=False)[
    "params"
  ]
  for name, layer in params.items():
    bias = np.asarray(layer["bias"])
    expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
    assert np.all(bias == expected_bias), name
    kernel = np.asarray(layer["kernel"])
    assert abs(kernel.mean()) < 1e-3 and abs(kernel.std() - 0.01) < 5e-4, name


def test_width_multiplier_and_small_inputs_make_a_tiny_model():
  model = tiny()
  variables = model.init(jax.random.key(0), jnp.zeros((2, 67, 67, 3)), train=False)
  logits = model.apply(variables, jnp.ones((2, 67, 67, 3)), train=False)
  assert logits.shape == (2, 7)
  assert variables["params"]["conv1"]["kernel"].shape == (11, 11, 3, 12)  # 96 / 8
  assert param_count(variables["params"]) < 1_000_000


def test_dropout_only_in_training():
  model = tiny(init_scheme="he")
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 67, 67, 3)), jnp.float32)
  variables = model.init(jax.random.key(0), x, train=False)
  eval_a = model.apply(variables, x, train=False)
  eval_b = model.apply(variables, x, train=False)
  np.testing.assert_array_equal(eval_a, eval_b)
  train_a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  train_b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(train_a, train_b)
  assert not np.allclose(train_a, eval_a)
  no_dropout = tiny(init_scheme="he", dropout_rate=0.0)
  no_dropout_eval = no_dropout.apply(variables, x, train=False)
  np.testing.assert_allclose(
    no_dropout.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)}), no_dropout_eval, rtol=1e-6
  )
  # At test time inverted dropout is the identity, and the paper's halves fc6's and fc7's outputs.
  inverted_eval = tiny(init_scheme="he", dropout_scaling="in_training").apply(variables, x, train=False)
  np.testing.assert_allclose(inverted_eval, no_dropout_eval, rtol=1e-6)
  assert not np.allclose(eval_a, no_dropout_eval)


def test_dropout_zeroes_fc6_and_fc7_outputs_by_default_or_their_inputs_as_torchvision_does():
  """Section 4.2 drops "the output of each hidden neuron" of fc6 and fc7: in training fc7 and fc8 see relu6
  and relu7 with each unit either 0 or as it was. torchvision's placement drops pool5 and relu6 instead.
  (Flax's Dropout, whose output is captured, doubles the kept units; the model halves them after it.)"""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 67, 67, 3)), jnp.float32)
  rngs = {"dropout": jax.random.key(3)}
  for placement, dropped in (("fc6_fc7_outputs", ("relu6", "relu7")), ("fc6_fc7_inputs", ("pool5", "relu6"))):
    model = tiny(init_scheme="he", dropout_placement=placement)
    variables = model.init(jax.random.key(0), x, train=False)
    logits, state = model.apply(
      variables, x, train=True, rngs=rngs, capture_intermediates=True, mutable=["intermediates"]
    )
    sown = {k: np.asarray(v[0]).reshape(4, -1) for k, v in state["intermediates"].items() if k[:4] in ("relu", "pool")}
    outputs = [np.asarray(state["intermediates"][f"Dropout_{i}"]["__call__"][0]) / 2 for i in (0, 1)]
    for name, out in zip(dropped, outputs):
      active, kept = sown[name] != 0, out != 0
      assert not (kept & ~active).any() and 0.4 < kept[active].mean() < 0.6, (placement, name)
      np.testing.assert_allclose(out[kept], sown[name][kept], rtol=1e-6)
    p = variables["params"]
    relu = lambda v: np.maximum(v, 0)
    if placement == "fc6_fc7_outputs":  # fc8 reads the dropped relu7 directly
      expected = outputs[1] @ np.asarray(p["fc8"]["kernel"]) + np.asarray(p["fc8"]["bias"])
    else:  # fc8 reads relu7 as fc7 computed it from the dropped relu6
      relu7 = relu(outputs[1] @ np.asarray(p["fc7"]["kernel"]) + np.asarray(p["fc7"]["bias"]))
      expected = relu7 @ np.asarray(p["fc8"]["kernel"]) + np.asarray(p["fc8"]["bias"])
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-5)


def test_dropout_halves_the_outputs_at_test_as_the_paper_or_doubles_them_in_training_as_inverted_dropout():
  """Section 4.2: kept units pass unscaled in training and "at test time ... multiply their outputs by 0.5";
  inverted dropout (torchvision, Flax) doubles the kept units in training and leaves test time alone. fc8's
  logits are checked against NumPy from relu7 (fc8 reads dropped relu7). Both draw their mask through the
  same Flax Dropout module (name and rng path), so the masks, read from its output, are equal."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 67, 67, 3)), jnp.float32)
  rngs = {"dropout": jax.random.key(3)}
  variables = tiny(init_scheme="he").init(jax.random.key(0), x, train=False)
  fc8 = variables["params"]["fc8"]
  masks = {}
  for scaling, train_factor, test_factor in (("at_test", 1.0, 0.5), ("in_training", 2.0, 1.0)):
    model = tiny(init_scheme="he", dropout_scaling=scaling)
    for train, factor in ((True, train_factor), (False, test_factor)):
      logits, state = model.apply(
        variables, x, train=train, rngs=rngs, capture_intermediates=True, mutable=["intermediates"]
      )
      relu7 = np.asarray(state["intermediates"]["relu7"][0])
      mask = np.asarray(state["intermediates"]["Dropout_1"]["__call__"][0]) != 0 if train else 1.0
      if train:
        masks.setdefault(scaling, (mask, relu7 != 0))
      expected = (relu7 * mask * factor) @ np.asarray(fc8["kernel"]) + np.asarray(fc8["bias"])
      np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-5, err_msg=f"{scaling} {train}")
  (mask, active), (other_mask, _) = masks.values()
  np.testing.assert_array_equal(mask, other_mask)
  assert 0.3 < (mask & active).sum() / active.sum() < 0.7


def test_bfloat16_compute_close_to_float32():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 67, 67, 3)), jnp.float32)
  f32 = tiny(init_scheme="he")
  variables = f32.init(jax.random.key(0), x, train=False)
  logits32 = f32.apply(variables, x, train=False)
  logits16, state = tiny(init_scheme="he", dtype=jnp.bfloat16).apply(
    variables, x, train=False, mutable=["intermediates"]
  )
  assert logits16.dtype == jnp.float32  # logits come back in float32 for the loss
  # The layers compute in bfloat16 (a model that ignored `dtype` would give float32 maps, equal logits).
  assert {v[0].dtype for v in state["intermediates"].values()} == {jnp.dtype(jnp.bfloat16)}
  assert not np.array_equal(logits16, logits32)
  assert np.all(np.isfinite(logits16))
  scale = np.max(np.abs(logits32))
  assert scale > 0.1
  # bfloat16 keeps 8 significant bits (relative steps of 2^-8 = 0.4%); through eight layers the logits
  # stay within a few of those steps of the float32 ones.
  np.testing.assert_allclose(logits16, logits32, atol=0.03 * scale)


def test_lrn_switch_changes_the_function():
  x = jnp.asarray(np.random.default_rng(0).normal(scale=50.0, size=(2, 67, 67, 3)), jnp.float32)
  variables = tiny(init_scheme="he").init(jax.random.key(0), x, train=False)
  with_lrn = tiny(init_scheme="he").apply(variables, x, train=False)
  without = tiny(init_scheme="he", use_lrn=False).apply(variables, x, train=False)
  assert not np.allclose(with_lrn, without)
  assert AlexNet(preset="owt").lrn_enabled is False and AlexNet(preset="paper").lrn_enabled is True


def test_split_towers_equal_grouped_convolution():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 67, 67, 3)), jnp.float32)
  variables = tiny(init_scheme="he").init(jax.random.key(0), x, train=False)
  grouped = tiny(init_scheme="he", tower_impl="grouped").apply(variables, x, train=False)
  split = tiny(init_scheme="he", tower_impl="split").apply(variables, x, train=False)
  np.testing.assert_allclose(split, grouped, rtol=1e-5, atol=1e-5)


def test_lrn_per_tower_normalises_each_half_on_its_own():
  from alexnet_jax.model.lrn import local_response_norm

  x = jnp.asarray(np.random.default_rng(0).normal(scale=100.0, size=(1, 1, 1, 8)), jnp.float32)
  per_tower = AlexNet(preset="paper").lrn(x)
  halves = jnp.concatenate([local_response_norm(x[..., :4]), local_response_norm(x[..., 4:])], -1)
  np.testing.assert_allclose(per_tower, halves, rtol=1e-6)
  assert not np.allclose(per_tower, local_response_norm(x))


@pytest.mark.parametrize(
  "impl,size,padding",
  [
    (impl, size, padding)
    for impl in ("space_to_depth_conv", "im2col_conv")
    for size, padding in ((227, 0), (224, 2), (67, 0), (70, 3))
    if impl == "space_to_depth_conv" or size < 100
  ],
)
def test_conv1_forms_equal_the_strided_convolution(size, padding, impl):
  """Against lax's direct 11x11 stride-4 convolution: outputs and both gradients."""
  from jax import lax

  rng = np.random.default_rng(size)
  x = jnp.asarray(rng.normal(size=(2, size, size, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(11, 11, 3, 8)) * 0.05, jnp.float32)
  direct = lambda x, k: lax.conv_general_dilated(
    x, k, (4, 4), [(padding, padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  blocked = lambda x, k: getattr(models, impl)(x, k, 4, padding)
  want, got = jax.jit(direct)(x, kernel), jax.jit(blocked)(x, kernel)  # jit: one program, not 100s of ops
  out = (size + 2 * padding - 11) // 4 + 1
  assert got.shape == want.shape == (2, out, out, 8)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  grads = lambda f: jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), (0, 1)))
  for want_g, got_g in zip(grads(direct)(x, kernel), grads(blocked)(x, kernel)):
    np.testing.assert_allclose(got_g, want_g, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
  "options",
  [
    dict(conv1_impl="space_to_depth"),
    dict(conv1_impl="im2col"),
    dict(pool_impl="masked"),
    dict(tower_impl="split"),
    dict(lrn_impl="matmul"),
    dict(conv1_impl="space_to_depth", pool_impl="masked", tower_impl="split"),
    dict(conv1_impl="im2col", lrn_impl="matmul", tower_impl="split"),
  ],
)
def test_performance_options_keep_parameters_and_function(options):
  """Each implementation option against the straightforward one (grouped, direct conv1, XLA's pooling)."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 67, 67, 3)), jnp.float32)
  reference = tiny(init_scheme="he", tower_impl="grouped", conv1_impl="direct", pool_impl="xla", lrn_impl="slices")
  variables = reference.init(jax.random.key(0), x, train=False)
  fast = tiny(init_scheme="he", **{"tower_impl": "grouped", **options})
  assert jax.tree.map(jnp.shape, fast.init(jax.random.key(0), x, train=False)) == jax.tree.map(jnp.shape, variables)
  loss = lambda model: lambda p: jnp.sum(model.apply({"params": p}, x, train=False) ** 2)
  want = jax.value_and_grad(loss(reference))(variables["params"])
  got = jax.value_and_grad(loss(fast))(variables["params"])
  for w, g in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("field", ["conv1_impl", "lrn_impl", "pool_impl", "activation", "preset"])
def test_an_unknown_choice_is_refused_when_the_module_is_built(field):
  with pytest.raises(models.ChoiceError, match=f"AlexNet {field}='fft' is not one of"):
    tiny(**{field: "fft"})


# Section 3.2, footnote 2: the one-GPU net halves conv1-conv4 (48-128-192-192), keeps conv5 (256) and fc:
#   conv1 11*11*3*48+48 = 17,472          conv2 5*5*48*128+128 = 153,728
#   conv3 3*3*128*192+192 = 221,376       conv4 3*3*192*192+192 = 331,968
#   conv5 3*3*192*256+256 = 442,624       fc6, fc7, fc8 as in the paper preset
PAPER_ONE_GPU_PARAMS = 17_472 + 153_728 + 221_376 + 331_968 + 442_624 + 37_752_832 + 16_781_312 + 4_097_000


def test_the_papers_one_gpu_comparison_net_has_the_hand_counted_parameters():
  model = AlexNet(preset="paper_one_gpu", num_classes=1000)
  params, _, inter = init_shapes(model, models.canonical_image_size("paper_one_gpu"))
  assert param_count(params) == PAPER_ONE_GPU_PARAMS == 59_798_312
  assert {n: p["kernel"].shape[-1] for n, p in params.items() if n.startswith("conv")} == {
    "conv1": 48,
    "conv2": 128,
    "conv3": 192,
    "conv4": 192,
    "conv5": 256,
  }
  assert inter["pool5"][0].shape[1:] == (6, 6, 256)


def _conv1_by_hand(params, x):
  kernel, bias = np.asarray(params["conv1"]["kernel"]), np.asarray(params["conv1"]["bias"])
  out = jax.lax.conv_general_dilated(x, kernel, (4, 4), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return np.asarray(out) + bias


def test_tanh_replaces_relu_after_every_layer():
  model = tiny(activation="tanh")
  x = jax.random.normal(jax.random.key(1), (2, 67, 67, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
  inter = state["intermediates"]
  np.testing.assert_allclose(inter["relu1"][0], np.tanh(_conv1_by_hand(variables["params"], x)), atol=1e-5)
  assert float(inter["relu3"][0].min()) < 0  # not clipped at zero anywhere down the net
  with pytest.raises(models.ChoiceError, match="AlexNet activation='sigmoid' is not one of"):
    tiny(activation="sigmoid")


def test_lrn_with_alpha_zero_is_its_constant_gain_alone():
  """b = a / (k + 0)^beta = a / 2^0.75 (section 3.3's formula with alpha = 0), then the 3x3/2 pooling."""
  model = tiny(lrn_alpha=0.0)
  x = jax.random.normal(jax.random.key(1), (2, 67, 67, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
  relu1 = np.asarray(state["intermediates"]["relu1"][0]) / 2.0**0.75
  side = (relu1.shape[1] - 3) // 2 + 1
  pooled = np.stack(
    [
      np.stack([relu1[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max(axis=(1, 2)) for j in range(side)], axis=1)
      for i in range(side)
    ],
    axis=1,
  )
  np.testing.assert_allclose(state["intermediates"]["pool1"][0], pooled, rtol=1e-6)


@pytest.mark.parametrize("lrn_impl", ["slices", "matmul"])
def test_lrn_k_reaches_the_layer(lrn_impl):
  """`lrn_k=1` (Caffe's default) against a float64 loop of section 3.3's formula with k = 1, per tower."""
  x = np.random.default_rng(3).normal(scale=60.0, size=(2, 3, 3, 8)).astype(np.float32)
  got = np.asarray(AlexNet(preset="paper", lrn_k=1.0, lrn_impl=lrn_impl).lrn(jnp.asarray(x)), np.float64)
  expected = np.empty(x.shape)
  a = x.astype(np.float64)
  for tower in (range(0, 4), range(4, 8)):
    for i in tower:
      window = [j for j in range(i - 2, i + 3) if j in tower]
      expected[..., i] = a[..., i] / (1.0 + 1e-4 * sum(a[..., j] ** 2 for j in window)) ** 0.75
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  paper_k = np.asarray(AlexNet(preset="paper", lrn_impl=lrn_impl).lrn(jnp.asarray(x)), np.float64)
  assert np.min(np.abs(got / paper_k)) > 1.05  # k = 1 scales every unit up against the paper's k = 2
