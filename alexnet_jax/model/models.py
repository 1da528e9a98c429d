"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) as a flax.linen module, with its ablation switches.

Presets (`PRESETS`):
  paper      section 3.5 / figure 2: conv widths 96-256-384-384-256, 227x227 input, conv1 11x11 stride 4
             VALID (-> 55x55). conv2, conv4 and conv5 see only their own GPU's half of the previous layer
             (two towers, `towers=2`); conv3 and the fully connected layers see everything. LRN after the
             ReLU of conv1 and conv2 (section 3.3), max-pooling after LRN1, LRN2 and conv5 (section 3.4).
  one_tower  the same widths with every layer connected to all channels (no groups).
  paper_one_gpu  the one-GPU net section 3.2 compares the two towers with: half the kernels in conv1-conv4
             (48-128-192-192), conv5 and the fully connected layers at full size (footnote 2), no groups.
  owt        torchvision's "one weird trick" AlexNet (Krizhevsky, 2014): 64-192-384-256-256, 224 input,
             conv1 padding 2, no LRN. Its parameters load from a torchvision state_dict (convert.py).

The switches are independent of the preset: `use_lrn`, `overlapping_pool` (3x3 stride 2, section 3.4,
vs 2x2 stride 2: both give 55 -> 27 -> 13 -> 6 at the canonical input, so fc6 keeps 9216 inputs),
`dropout_rate` (0.5, section 4.2), `dropout_placement` (on fc6's and fc7's outputs, section 4.2, or on
their inputs, torchvision's placement), `dropout_scaling` (halving the outputs at test time, section 4.2,
or doubling the kept ones in training, torchvision's and Flax's), `activation` (ReLU, or tanh for section
3.1's comparison), `lrn_alpha` (0 leaves LRN's constant gain alone, x / k^beta: a control for the scale LRN
applies), `lrn_k` (LRN's additive constant: 1 removes that gain, as Caffe's default does), `init_scheme`
(section 5's N(0, 0.01) with biases of 1, or He's), `num_classes`, `width_multiplier` and any input size
(fc6's fan-in follows the input), so a tiny model trains on a CPU.

`tower_impl`, `pool_impl`, `conv1_impl` and `lrn_impl` choose how layers are computed, never what they
compute: the parameters and the function are the same (tests/test_models.py), so they are speed settings,
measured by `python -m experiments.benchmark`. For the last three, `auto` (the default) takes the form
measured fastest on the backend JAX runs on (`BACKEND_DEFAULTS`); `tower_impl` is `split` unless set. Every
choice is checked when the module is constructed (`CHOICES`).
"""

import dataclasses
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from alexnet_jax.model.lrn import LRN_IMPLS, PAPER_ALPHA, PAPER_K, local_response_norm
from alexnet_jax.model.pooling import POOL_IMPLS, max_pool


class ChoiceError(ValueError):
  """A choice field of AlexNet set to a value outside `CHOICES[field]`."""

  def __init__(self, field: str, value, allowed):
    super().__init__(f"AlexNet {field}={value!r} is not one of {list(allowed)}.")
    self.field, self.value, self.allowed = field, value, tuple(allowed)


@dataclasses.dataclass(frozen=True)
class ConvSpec:
  """One convolutional layer: output channels, square kernel, stride, padding, groups (towers)."""

  features: int
  kernel: int
  stride: int
  padding: int
  towers: int


@dataclasses.dataclass(frozen=True)
class Preset:
  """A preset's architecture (`PRESETS`).

  Attributes:
    convs: the five convolutional layers, conv1 first.
    fc_features: the width of fc6 and fc7 (4096 in every preset, section 3.5).
    use_lrn: whether LRN follows conv1 and conv2 (section 3.3) when `AlexNet.use_lrn` is None.
    image_size: the canonical input side (55 -> 27 -> 13 -> 6 through conv1 and the pools).
    lrn_towers: how many GPUs conv1's and conv2's maps were computed (and normalised) on.
  """

  convs: Tuple[ConvSpec, ...]
  fc_features: int
  use_lrn: bool
  image_size: int  # the canonical input side
  lrn_towers: int = 1  # how many GPUs conv1's and conv2's maps were computed (and normalised) on


def _alexnet_convs(widths, conv1_padding, towers):
  """The five layers of figure 2: kernels 11, 5, 3, 3, 3; stride 4 then 1; 'same' padding after conv1."""
  t2, t3, t4, t5 = towers
  return (
    ConvSpec(widths[0], 11, 4, conv1_padding, 1),
    ConvSpec(widths[1], 5, 1, 2, t2),
    ConvSpec(widths[2], 3, 1, 1, t3),
    ConvSpec(widths[3], 3, 1, 1, t4),
    ConvSpec(widths[4], 3, 1, 1, t5),
  )


PAPER_WIDTHS = (96, 256, 384, 384, 256)  # section 3.5
OWT_WIDTHS = (64, 192, 384, 256, 256)  # torchvision.models.alexnet
ONE_GPU_WIDTHS = tuple(w // 2 for w in PAPER_WIDTHS[:4]) + PAPER_WIDTHS[4:]  # section 3.2, footnote 2

PRESETS = {
  # Section 3.5: conv2, conv4, conv5 connect only to the maps on their own GPU; conv3 to all of them.
  "paper": Preset(_alexnet_convs(PAPER_WIDTHS, 0, (2, 1, 2, 2)), 4096, True, 227, lrn_towers=2),
  "one_tower": Preset(_alexnet_convs(PAPER_WIDTHS, 0, (1, 1, 1, 1)), 4096, True, 227),
  # Section 3.2, footnote 2: the one-GPU comparison net halves conv1-conv4 but not conv5 or the fc layers.
  "paper_one_gpu": Preset(_alexnet_convs(ONE_GPU_WIDTHS, 0, (1, 1, 1, 1)), 4096, True, 227),
  "owt": Preset(_alexnet_convs(OWT_WIDTHS, 2, (1, 1, 1, 1)), 4096, False, 224),
}

# Section 5: "We initialized the weights in each layer from a zero-mean Gaussian distribution with standard
# deviation 0.01. We initialized the neuron biases in the second, fourth, and fifth convolutional layers, as
# well as in the fully-connected hidden layers, with the constant 1 ... the remaining layers with 0."
PAPER_INIT_STD = 0.01
BIAS_ONE_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")

TOWER_IMPLS = ("grouped", "split")
# Section 3.1: ReLU, and the saturating tanh it is compared with (figure 1).
ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh}
CONV1_IMPLS = ("direct", "space_to_depth", "im2col")
INIT_SCHEMES = ("paper", "he")


def kernel_initializer(init: str):
  """The weight initialiser of scheme `init`, for every convolutional and fully connected layer.

  Args:
    init: 'paper', N(0, 0.01) (section 5); or 'he', N(0, 2 / fan_in), the study's choice for narrow
      networks (experiments/results/study/README.md).

  Returns:
    A Flax initialiser.

  Raises:
    ValueError: `init` is not one of INIT_SCHEMES.
  """
  if init == "paper":
    return nn.initializers.normal(PAPER_INIT_STD)
  if init == "he":
    return nn.initializers.variance_scaling(2.0, "fan_in", "normal")
  raise ValueError(f"Unknown init {init!r}: expected one of {INIT_SCHEMES}.")


def bias_initializer(init: str, layer: str):
  """The bias initialiser of `layer`: 1 on conv2, conv4, conv5, fc6, fc7 under the paper's init (section 5),
  0 elsewhere and under every other scheme.

  Args:
    init: the scheme, one of INIT_SCHEMES.
    layer: the layer's name, 'conv1' ... 'conv5', 'fc6', 'fc7', 'fc8'.

  Returns:
    `nn.initializers.ones` or `nn.initializers.zeros`.
  """
  return nn.initializers.ones if init == "paper" and layer in BIAS_ONE_LAYERS else nn.initializers.zeros


class TowerConv(nn.Module):
  """A 2-D convolution whose input and output channels are split into `towers` independent groups.

  The kernel has Flax's grouped shape [k, k, in/towers, out] whatever `impl` is, so checkpoints move
  freely between implementations:
    grouped  one `feature_group_count=towers` convolution;
    split    one ordinary convolution per tower on its channel slice, then a concatenation: the default,
             the faster of the two where measured (experiments/results/benchmark/README.md).
  `conv_impl` computes an ungrouped convolution as lax's direct convolution ('direct'), as the equal
  stride-1 convolution of space-to-depth blocks ('space_to_depth', `space_to_depth_conv`), or as one matrix
  multiply of its patches ('im2col', `im2col_conv`); the kernel parameter keeps its shape.

  Attributes:
    features: output channels.
    kernel_size: the square kernel's side.
    stride: the stride along both spatial axes.
    padding: zero padding on every side of both spatial axes.
    towers: channel groups; input and output channels must both divide by it.
    impl: 'grouped' or 'split' (TOWER_IMPLS), for towers > 1.
    conv_impl: 'direct', 'space_to_depth' (used for stride > 1 only) or 'im2col' (CONV1_IMPLS), for
      towers == 1; any other value computes 'direct'.
    kernel_init, bias_init: the initialisers of `kernel` [k, k, in/towers, features] and `bias` [features].
    dtype: the computation dtype (inputs and parameters are cast to it).
    param_dtype: the parameters' dtype.
  """

  features: int
  kernel_size: int
  stride: int
  padding: int
  towers: int = 1
  impl: str = "split"
  conv_impl: str = "direct"
  kernel_init: Any = nn.initializers.normal(PAPER_INIT_STD)
  bias_init: Any = nn.initializers.zeros
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    """The convolution of `x` plus the bias.

    Args:
      x: float [B, H, W, C], C divisible by `towers`.

    Returns:
      [B, (H + 2 * padding - kernel_size) // stride + 1, (likewise W), features] in `dtype`.

    Raises:
      ValueError: C or `features` does not divide by `towers`, or `impl` is unknown where it is used.
    """
    in_features = x.shape[-1]
    if in_features % self.towers or self.features % self.towers:
      raise ValueError(
        f"{self.name}: {in_features} input and {self.features} output channels do not split into {self.towers} towers."
      )
    kernel = self.param(
      "kernel",
      self.kernel_init,
      (self.kernel_size, self.kernel_size, in_features // self.towers, self.features),
      self.param_dtype,
    )
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    conv = lambda inputs, k, groups: lax.conv_general_dilated(
      inputs,
      k,
      window_strides=(self.stride, self.stride),
      padding=[(self.padding, self.padding)] * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=groups,
    )
    if self.conv_impl == "space_to_depth" and self.towers == 1 and self.stride > 1:
      y = space_to_depth_conv(x, kernel, self.stride, self.padding)
    elif self.conv_impl == "im2col" and self.towers == 1:
      y = im2col_conv(x, kernel, self.stride, self.padding)
    elif self.towers == 1 or self.impl == "grouped":
      y = conv(x, kernel, self.towers)
    elif self.impl == "split":
      xs = jnp.split(x, self.towers, axis=-1)
      ks = jnp.split(kernel, self.towers, axis=-1)
      y = jnp.concatenate([conv(xi, ki, 1) for xi, ki in zip(xs, ks)], axis=-1)
    else:
      raise ValueError(f"Unknown tower impl {self.impl!r}: expected one of {TOWER_IMPLS}.")
    return y + bias


def space_to_depth_conv(x, kernel, stride: int, padding: int):
  """conv(x, kernel, stride, symmetric padding) as a stride-1 convolution of stride x stride blocks.

  conv1 (11x11, stride 4, 3 input channels) is a poor fit for matrix units: 3 channels per tap. Cutting
  the padded image into 4x4 blocks gives 48 channels, and the kernel, zero-padded to 12x12 and cut the same
  way, becomes 3x3 over those 48 channels, stride 1. The result is the same convolution (the padded taps
  multiply zeros) with about 20% more multiply-adds but dense channel dimensions (the trick of the MLPerf
  ResNet-50 TPU submissions).

  Args:
    x: float [B, H, W, C].
    kernel: [k, k, C, F], the same dtype as x.
    stride: the stride along both spatial axes.
    padding: zero padding on every side of both spatial axes.

  Returns:
    [B, (H + 2 * padding - k) // stride + 1, (likewise W), F], as `lax.conv_general_dilated` gives it.
  """
  batch, height, width, channels = x.shape
  k, features = kernel.shape[0], kernel.shape[-1]
  taps = -(-k // stride)  # the kernel's side in blocks
  out_h = (height + 2 * padding - k) // stride + 1
  out_w = (width + 2 * padding - k) // stride + 1
  # The padded image must hold exactly the rows and columns the blocked kernel reads.
  need_h, need_w = stride * (out_h - 1 + taps), stride * (out_w - 1 + taps)
  x = jnp.pad(
    x, ((0, 0), (padding, max(0, need_h - height - padding)), (padding, max(0, need_w - width - padding)), (0, 0))
  )[:, :need_h, :need_w]
  x = x.reshape(batch, need_h // stride, stride, need_w // stride, stride, channels)
  x = x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, need_h // stride, need_w // stride, -1)
  side = taps * stride
  kernel = jnp.pad(kernel, ((0, side - k), (0, side - k), (0, 0), (0, 0)))
  kernel = kernel.reshape(taps, stride, taps, stride, channels, features)
  kernel = kernel.transpose(0, 2, 1, 3, 4, 5).reshape(taps, taps, stride * stride * channels, features)
  return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def im2col_conv(x, kernel, stride: int, padding: int):
  """conv(x, kernel, stride, symmetric padding) as one matrix multiply of its patches.

  The k x k x C patch of each output pixel is gathered in two passes of strided slices: the k kernel rows
  side by side on the channel axis, then k column offsets of that (chunks k*C wide, not C: XLA:CPU copies
  wide chunks much faster), laid out (column, row, channel) and multiplied with the kernel in that order,
  [k*k*C, F]. conv1's three input channels make a poor convolution for XLA:CPU and a good matrix multiply
  (experiments/results/benchmark/README.md).

  Args:
    x: float [B, H, W, C].
    kernel: [k, k, C, F], the same dtype as x.
    stride: the stride along both spatial axes.
    padding: zero padding on every side of both spatial axes.

  Returns:
    [B, (H + 2 * padding - k) // stride + 1, (likewise W), F].
  """
  k = kernel.shape[0]
  x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  out_h = (x.shape[1] - k) // stride + 1
  out_w = (x.shape[2] - k) // stride + 1
  rows = jnp.concatenate([x[:, i : i + stride * (out_h - 1) + 1 : stride] for i in range(k)], axis=-1)
  patches = jnp.concatenate([rows[:, :, j : j + stride * (out_w - 1) + 1 : stride] for j in range(k)], axis=-1)
  return patches @ jnp.swapaxes(kernel, 0, 1).reshape(-1, kernel.shape[-1])


def scaled(width: int, multiplier: float, towers: int) -> int:
  """A layer width times `multiplier`, rounded to a multiple of `towers` and at least `towers`.

  Args:
    width: the preset's channels (or units).
    multiplier: `AlexNet.width_multiplier`.
    towers: the layer's channel groups.

  Returns:
    The scaled width.
  """
  return max(towers, int(round(width * multiplier / towers)) * towers)


class AlexNet(nn.Module):
  """AlexNet: `__call__(images, *, train) -> float32 logits [B, num_classes]`.

  Every choice field is checked when the module is constructed, so a misspelt setting fails before any
  compilation. The *_impl fields choose how layers compute, never what: the parameters and the function
  are the same whichever is set; 'auto' is the backend's entry in BACKEND_DEFAULTS (`resolve_impl`),
  resolved when the module runs.

  Attributes:
    preset: the architecture, a key of PRESETS: 'paper', 'one_tower', 'paper_one_gpu' or 'owt'.
    num_classes: fc8's outputs.
    use_lrn: LRN after the activations of conv1 and conv2 (section 3.3); None takes the preset's choice
      (on in all but 'owt').
    lrn_per_tower: normalise each tower's channels on their own, as the paper's two GPUs did (the 5-channel
      window never crossed from one GPU's 48 maps to the other's). It changes only the two channels on
      each side of the tower boundary, and only in the 'paper' preset (the one with `lrn_towers` 2).
    overlapping_pool: 3x3 windows at stride 2 (section 3.4); False: 2x2 at stride 2.
    dropout_rate: the dropout probability (0.5, section 4.2); active only when `train`.
    dropout_placement: 'fc6_fc7_outputs', section 4.2's "output of each hidden neuron" of the first two
      fully connected layers (Caffe's and cuda-convnet's placement), or 'fc6_fc7_inputs', torchvision's:
      pool5's and fc6's outputs, so fc7's output is never dropped.
    dropout_scaling: 'at_test', section 4.2's: units are kept unscaled in training and every output is
      multiplied by 1 - rate at test time; or 'in_training' (inverted dropout, torchvision's and Flax's):
      kept units are divided by 1 - rate in training and nothing changes at test. The two compute the same
      test-time function, but the next layer's weights differ by that factor, and with them the effective
      initialisation and step size.
    activation: 'relu' (section 3.1) or 'tanh' (its saturating comparison, figure 1), after every
      convolution and after fc6 and fc7.
    lrn_alpha: LRN's alpha (1e-4, section 3.3), multiplying the plain window sum; 0 keeps only LRN's
      constant gain k^-beta.
    lrn_k: LRN's additive constant k (2, section 3.3); Caffe's default is 1.
    width_multiplier: scales every convolution's channels and fc6's and fc7's units (`scaled`); fc8
      keeps `num_classes`.
    init_scheme: 'paper' or 'he' (`kernel_initializer`, `bias_initializer`).
    tower_impl: how grouped layers compute: 'grouped' or 'split' (TowerConv; no 'auto').
    pool_impl: 'auto', 'xla' or 'masked' (pooling.max_pool).
    conv1_impl: 'auto', 'direct', 'space_to_depth' or 'im2col' (TowerConv's conv_impl, conv1 only).
    lrn_impl: 'auto', 'slices' or 'matmul' (lrn.local_response_norm).
    dtype: the computation dtype; the logits are returned in float32 whatever it is.
    param_dtype: the parameters' dtype.

  Raises:
    ChoiceError: on construction, a choice field outside CHOICES.
  """

  preset: str = "paper"
  num_classes: int = 1000
  use_lrn: Optional[bool] = None
  lrn_per_tower: bool = True
  overlapping_pool: bool = True
  dropout_rate: float = 0.5  # section 4.2
  dropout_placement: str = "fc6_fc7_outputs"  # section 4.2
  dropout_scaling: str = "at_test"  # section 4.2
  activation: str = "relu"  # section 3.1
  lrn_alpha: float = PAPER_ALPHA  # section 3.3; 0 keeps only the constant gain k^-beta
  lrn_k: float = PAPER_K  # section 3.3's additive constant; Caffe's default (and so Mishkin et al.'s) is 1
  width_multiplier: float = 1.0
  init_scheme: str = "paper"
  tower_impl: str = "split"
  pool_impl: str = "auto"
  conv1_impl: str = "auto"
  lrn_impl: str = "auto"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    super().__post_init__()
    for field, allowed in CHOICES.items():
      if getattr(self, field) not in allowed:
        raise ChoiceError(field, getattr(self, field), allowed)

  def resolved(self, field: str) -> str:
    """The implementation `field` computes with: `auto` is the one measured fastest on JAX's default
    backend (BACKEND_DEFAULTS).

    Args:
      field: 'pool_impl', 'conv1_impl' or 'lrn_impl'.

    Returns:
      The implementation's name, never 'auto'.
    """
    return resolve_impl(field, getattr(self, field), jax.default_backend())

  @property
  def spec(self) -> Preset:
    """The preset's architecture, PRESETS[preset]."""
    return PRESETS[self.preset]

  @property
  def lrn_enabled(self) -> bool:
    """Whether LRN runs: `use_lrn`, or the preset's choice when it is None."""
    return self.spec.use_lrn if self.use_lrn is None else self.use_lrn

  def pool(self, x):
    """Section 3.4: overlapping 3x3 windows at stride 2 (z=3, s=2), or the traditional 2x2 at stride 2.

    Args:
      x: [B, H, W, C].

    Returns:
      [B, (H - window) // 2 + 1, (W - window) // 2 + 1, C].
    """
    window = 3 if self.overlapping_pool else 2
    return max_pool(x, window, 2, self.resolved("pool_impl"))

  def lrn(self, x):
    """LRN over the channels of `x` [B, H, W, C] (section 3.3), per tower where `lrn_per_tower` and the
    preset has several; `x` unchanged where LRN is off. Returns the same shape and dtype."""
    if not self.lrn_enabled:
      return x
    towers = self.spec.lrn_towers
    if towers > 1 and self.lrn_per_tower:
      split = x.reshape(x.shape[:-1] + (towers, x.shape[-1] // towers))
      return local_response_norm(split, k=self.lrn_k, alpha=self.lrn_alpha, impl=self.resolved("lrn_impl")).reshape(
        x.shape
      )
    return local_response_norm(x, k=self.lrn_k, alpha=self.lrn_alpha, impl=self.resolved("lrn_impl"))

  def dropout(self, x, train: bool):
    """Dropout at `dropout_rate` (section 4.2), rescaled as `dropout_scaling` says.

    Flax's nn.Dropout draws the mask and divides the kept units by keep = 1 - rate; 'at_test' multiplies
    by keep after it, which leaves the kept units as they were in training (exactly at rate 0.5, to a
    rounding error at others) and scales every unit by keep at test time ("multiply their outputs by
    0.5"). The mask, and so the rng stream, is the same for both.
    """
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    if self.dropout_scaling == "in_training":
      return x
    return x * (1.0 - self.dropout_rate)

  @nn.compact
  def __call__(self, x, *, train: bool):
    """The class scores of a batch of images.

    With `mutable=['intermediates']` the activations are sown too: relu1 ... relu5 and relu6, relu7 (each
    layer after its activation), pool1, pool2 and pool5.

    Args:
      x: float [B, H, W, 3] images, already cropped and normalised (data/augment.py); cast to `dtype`. The
        canonical side is `canonical_image_size(preset)`; other sides work while every layer's output is
        non-empty (fc6's fan-in follows the side).
      train: apply dropout, which then needs a 'dropout' rng (`rngs={'dropout': key}`).

    Returns:
      float32 logits [B, num_classes].
    """
    return self.classifier(self.features(x.astype(self.dtype)), train).astype(jnp.float32)

  def features(self, x):
    """conv1 ... conv5, each followed by the activation, with LRN and pooling after conv1 and conv2
    (sections 3.3, 3.4) and pooling after conv5: [B, H, W, 3] -> pool5 [B, h, w, C]."""
    activation = ACTIVATIONS[self.activation]
    for index, conv in enumerate(self.spec.convs):
      name = f"conv{index + 1}"
      x = TowerConv(
        features=scaled(conv.features, self.width_multiplier, conv.towers),
        kernel_size=conv.kernel,
        stride=conv.stride,
        padding=conv.padding,
        towers=conv.towers,
        impl=self.tower_impl,
        conv_impl=self.resolved("conv1_impl") if index == 0 else "direct",
        kernel_init=kernel_initializer(self.init_scheme),
        bias_init=bias_initializer(self.init_scheme, name),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=name,
      )(x)
      x = activation(x)
      self.sow("intermediates", f"relu{index + 1}", x)
      if index in (0, 1):
        x = self.pool(self.lrn(x))
        self.sow("intermediates", f"pool{index + 1}", x)
    x = self.pool(x)
    self.sow("intermediates", "pool5", x)
    return x

  def classifier(self, x, train: bool):
    """fc6 and fc7 with the activation and dropout (section 4.2, where `dropout_placement` says), then fc8:
    pool5 [B, h, w, C] -> logits [B, num_classes] in `dtype`."""
    x = x.reshape((x.shape[0], -1))
    activation = ACTIVATIONS[self.activation]
    on_inputs = self.dropout_placement == "fc6_fc7_inputs"
    for name in ("fc6", "fc7"):
      if on_inputs:
        x = self.dropout(x, train)
      x = activation(self.dense(scaled(self.spec.fc_features, self.width_multiplier, 1), name)(x))
      self.sow("intermediates", f"relu{name[2:]}", x)  # relu6, relu7: figure 4's features (inference.py)
      if not on_inputs:
        x = self.dropout(x, train)
    return self.dense(self.num_classes, "fc8")(x)

  def dense(self, features: int, name: str) -> nn.Dense:
    """The fully connected layer `name` with `features` units, initialised as `init_scheme` says."""
    return nn.Dense(
      features,
      kernel_init=kernel_initializer(self.init_scheme),
      bias_init=bias_initializer(self.init_scheme, name),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=name,
    )


# `auto` for these fields: the implementation measured fastest on each backend ("gpu", or any other), the
# same parameters and function whichever is picked (tests/test_models.py); the measurements are in
# experiments/results/benchmark/README.md.
BACKEND_DEFAULTS = {
  "conv1_impl": {"gpu": "space_to_depth", "other": "im2col"},
  "lrn_impl": {"gpu": "slices", "other": "matmul"},
  "pool_impl": {"gpu": "xla", "other": "masked"},
}


# The straightforward forms: what the other implementations are tested against, and whose arithmetic is
# the network's own (tools/flops.py counts it; space-to-depth conv1 multiplies extra zeros).
REFERENCE_IMPLS = {"conv1_impl": "direct", "lrn_impl": "slices", "pool_impl": "xla"}


def resolve_impl(field: str, choice: str, backend: str) -> str:
  """The implementation `auto` stands for on `backend` (BACKEND_DEFAULTS[field]); any other choice as given.

  Args:
    field: a key of BACKEND_DEFAULTS: 'conv1_impl', 'lrn_impl' or 'pool_impl'.
    choice: the field's setting.
    backend: a JAX backend name, e.g. `jax.default_backend()`: 'gpu' has its own entry, any other takes
      'other'.

  Returns:
    The implementation's name.

  Raises:
    KeyError: `choice` is 'auto' and `field` is not a key of BACKEND_DEFAULTS.
  """
  if choice != "auto":
    return choice
  defaults = BACKEND_DEFAULTS[field]
  return defaults.get(backend, defaults["other"])


# Where dropout acts (AlexNet.dropout_placement): section 4.2's placement, or torchvision's.
DROPOUT_PLACEMENTS = ("fc6_fc7_outputs", "fc6_fc7_inputs")
# When dropout rescales (AlexNet.dropout_scaling): section 4.2's halving at test, or inverted dropout's.
DROPOUT_SCALINGS = ("at_test", "in_training")

# The allowed values of AlexNet's choice fields, checked once, when a module is constructed.
CHOICES = {
  "preset": tuple(PRESETS),
  "dropout_placement": DROPOUT_PLACEMENTS,
  "dropout_scaling": DROPOUT_SCALINGS,
  "init_scheme": INIT_SCHEMES,
  "activation": tuple(ACTIVATIONS),
  "tower_impl": TOWER_IMPLS,
  "pool_impl": ("auto",) + POOL_IMPLS,
  "conv1_impl": ("auto",) + CONV1_IMPLS,
  "lrn_impl": ("auto",) + LRN_IMPLS,
}


def canonical_image_size(preset: str) -> int:
  """The input side that gives 55 -> 27 -> 13 -> 6 (227 for the paper's VALID conv1, 224 for owt).

  Args:
    preset: a key of PRESETS.

  Returns:
    The side in pixels.

  Raises:
    ValueError: `preset` is not a key of PRESETS.
  """
  if preset not in PRESETS:
    raise ValueError(f"Unknown AlexNet preset {preset!r}: expected one of {sorted(PRESETS)}.")
  return PRESETS[preset].image_size


def param_count(params) -> int:
  """The number of scalars in a parameter tree (e.g. `variables['params']`)."""
  return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
