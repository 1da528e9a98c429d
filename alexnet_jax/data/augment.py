"""Image augmentation and evaluation views as pure JAX functions, run on the device inside the step.

Section 4.1 of the paper: from each 256x256 training image take random 224x224 patches and their
horizontal reflections, and add PCA colour noise ("fancy PCA") with alpha ~ N(0, 0.1) per eigenvalue, drawn
once per image per presentation. The only other preprocessing (section 2) is subtracting the mean activity
over the training set from each pixel. At test time the prediction averages the softmax over ten 224x224
patches: the four corners and the centre, and their reflections.

Every function takes a batch [B, H, W, 3] (uint8 or float) and a `jax.random` key where it draws.
"""

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# The ImageNet RGB principal components used by fb.resnet.torch and MXNet's lighting augmentation (the
# de facto standard: the paper does not publish its values). The eigenvalues are those of the covariance
# of pixels scaled to [0, 1], times 255 (section 4.1's formula multiplies alpha by the eigenvalue itself,
# so the pixel scale fixes the strength of the noise; with these, alpha ~ N(0, 0.1) shifts pixels by about
# 5.5 levels along the first component). Eigenvectors are the *columns* of IMAGENET_EIGVEC, ordered by
# decreasing eigenvalue. `python -m alexnet_jax.data.stats` computes the same quantities, in the same
# convention, for another dataset.
IMAGENET_EIGVAL = (55.46, 4.794, 1.148)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
# Per-channel mean and standard deviation of ImageNet training pixels (0-255), as used by torchvision.
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
# Section 4.1: "each alpha_i is a random variable drawn from a Gaussian with mean zero and standard
# deviation 0.1".
PAPER_PCA_STD = 0.1
# Section 4.1: 224x224 patches from 256x256 images (the configs crop 227, which makes conv1's VALID
# arithmetic exact).
PAPER_STORED_SIZE = 256
# The training crops and evaluation views below, by the names configs use.
TRAIN_CROPS = ("random", "inception", "center")  # center: no crop augmentation (the section 4.1 ablation)
EVAL_VIEWS = ("center", "ten_crop")


def resize(images, size: int):
  """Bilinear resize of [B, H, W, C] to [B, size, size, C] in float32 (no-op if already that size)."""
  images = images.astype(jnp.float32)
  if images.shape[1:3] == (size, size):
    return images
  return jax.image.resize(images, (images.shape[0], size, size, images.shape[3]), "bilinear")


def _crop_one(image, offset, size):
  return lax.dynamic_slice(image, (offset[0], offset[1], 0), (size, size, image.shape[-1]))


def random_crop_offsets(rng, batch: int, height: int, width: int, size: int):
  """Uniform top-left corners [B, 2] of size x size patches (section 4.1)."""
  if size > min(height, width):
    raise ValueError(f"Cannot crop {size}x{size} patches from {height}x{width} images.")
  ky, kx = jax.random.split(rng)
  return jnp.stack(
    [jax.random.randint(ky, (batch,), 0, height - size + 1), jax.random.randint(kx, (batch,), 0, width - size + 1)],
    axis=-1,
  )


def crop_at(images, offsets, size: int):
  """The size x size patch of each image at its offset [B, 2]."""
  return jax.vmap(functools.partial(_crop_one, size=size))(images, offsets)


def random_crop(images, rng, size: int):
  """An independent uniformly placed size x size patch of each image (section 4.1)."""
  return crop_at(images, random_crop_offsets(rng, *images.shape[:3], size), size)


def random_flip(images, rng):
  """Mirrors each image left-right with probability 1/2 (section 4.1)."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


def pca_lighting(images, rng, *, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC, std=PAPER_PCA_STD):
  """Adds [p1, p2, p3] [a1 l1, a2 l2, a3 l3]^T to every pixel, a ~ N(0, std) per image (section 4.1)."""
  alpha = std * jax.random.normal(rng, (images.shape[0], 3), jnp.float32)
  shift = (alpha * jnp.asarray(eigval, jnp.float32)) @ jnp.asarray(eigvec, jnp.float32).T  # [B, 3]
  return images.astype(jnp.float32) + shift[:, None, None, :]


def normalize(images, mean, std: Optional[Sequence[float]] = None):
  """Subtracts `mean` ([3] per channel, or [H, W, 3] per pixel as in section 2) and divides by `std`."""
  images = images.astype(jnp.float32) - jnp.asarray(mean, jnp.float32)
  if std is not None:
    images = images / jnp.asarray(std, jnp.float32)
  return images


def center_crop(images, size: int):
  height, width = images.shape[1:3]
  top, left = (height - size) // 2, (width - size) // 2
  return images[:, top : top + size, left : left + size, :]


def ten_crop(images, size: int):
  """The paper's test views (section 4.1): 4 corners and the centre, then their mirrors -> [B, 10, s, s, C]."""
  height, width = images.shape[1:3]
  if size > min(height, width):
    raise ValueError(f"Cannot crop {size}x{size} patches from {height}x{width} images.")
  top, left = (height - size) // 2, (width - size) // 2
  corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size), (top, left)]
  crops = [images[:, y : y + size, x : x + size, :] for y, x in corners]
  crops += [c[:, :, ::-1, :] for c in crops]
  return jnp.stack(crops, axis=1)


def random_resized_crop(images, rng, size: int, *, area_range=(0.08, 1.0), ratio_range=(3 / 4, 4 / 3)):
  """Inception-style crop (Szegedy et al., 2015): a random area fraction and aspect ratio, resized to size.

  A config alternative to the paper's fixed-scale crop. Boxes that would not fit are clipped to the image.
  """
  batch, height, width = images.shape[:3]
  k_area, k_ratio, k_y, k_x = jax.random.split(rng, 4)
  area = jax.random.uniform(k_area, (batch,), minval=area_range[0], maxval=area_range[1]) * height * width
  log_ratio = jax.random.uniform(k_ratio, (batch,), minval=np.log(ratio_range[0]), maxval=np.log(ratio_range[1]))
  ratio = jnp.exp(log_ratio)
  crop_w = jnp.clip(jnp.sqrt(area * ratio), 1.0, width)
  crop_h = jnp.clip(jnp.sqrt(area / ratio), 1.0, height)
  y0 = jax.random.uniform(k_y, (batch,)) * (height - crop_h)
  x0 = jax.random.uniform(k_x, (batch,)) * (width - crop_w)

  def one(image, y, x, h, w):
    scale = jnp.stack([size / h, size / w])
    translation = -jnp.stack([y, x]) * scale
    return jax.image.scale_and_translate(
      image.astype(jnp.float32), (size, size, image.shape[-1]), (0, 1), scale, translation, "bilinear", antialias=True
    )

  return jax.vmap(one)(images, y0, x0, crop_h, crop_w)


def _mean_for(mean, images_size):
  """A per-pixel mean image must match the image it is subtracted from."""
  mean = jnp.asarray(mean, jnp.float32)
  if mean.ndim == 3 and mean.shape[:2] != images_size:
    mean = jax.image.resize(mean, images_size + (3,), "bilinear")
  return mean


def train_preprocess(
  batch,
  rng,
  *,
  resize_to: Optional[int],
  crop_size: int,
  crop: str = "random",
  flip: bool = True,
  pca_std: float = PAPER_PCA_STD,
  eigval=IMAGENET_EIGVAL,
  eigvec=IMAGENET_EIGVEC,
  mean=IMAGENET_MEAN_RGB,
  std=None,
  dtype=jnp.float32,
):
  """The training view of a uint8 batch: resize (e.g. 128 -> 256), random crop (or Inception crop), mean
  subtraction, flip, PCA lighting, optional scaling. `crop` is 'random' (section 4.1), 'inception', or
  'center' (the same centre patch every time: training without crop augmentation).

  The paper crops patches of mean-subtracted images; cropping first and subtracting the same patch of the
  mean is identical and touches (crop/stored)^2 of the pixels, so the random crop runs on uint8 data."""
  k_crop, k_flip, k_light = jax.random.split(rng, 3)
  images = batch["image"]
  if resize_to:
    images = resize(images, resize_to)
  mean = _mean_for(mean, images.shape[1:3])
  if crop == "random":
    offsets = random_crop_offsets(k_crop, *images.shape[:3], crop_size)
    images = crop_at(images, offsets, crop_size).astype(jnp.float32)
    if mean.ndim == 3:  # per-pixel mean: the same patch of the mean image
      mean = crop_at(jnp.broadcast_to(mean, (images.shape[0],) + mean.shape), offsets, crop_size)
    images = images - mean
  elif crop == "inception":
    images = random_resized_crop(images.astype(jnp.float32) - mean, k_crop, crop_size)
  elif crop == "center":
    images = center_crop(images.astype(jnp.float32) - mean, crop_size)
  else:
    raise ValueError(f"Unknown crop {crop!r}: expected one of {TRAIN_CROPS}.")
  if flip:
    images = random_flip(images, k_flip)
  if pca_std:
    images = pca_lighting(images, k_light, eigval=eigval, eigvec=eigvec, std=pca_std)
  if std is not None:
    images = images / jnp.asarray(std, jnp.float32)
  return {**batch, "image": images.astype(dtype)}


def train_preprocessor(*, crop: str = "random", **options):
  """`train_preprocess` with its options fixed: the function a train step calls as (batch, rng). An
  unknown `crop` is refused here, when the step is built, rather than when it is first traced."""
  if crop not in TRAIN_CROPS:
    raise ValueError(f"augment.crop={crop!r} is not one of {list(TRAIN_CROPS)}.")
  return functools.partial(train_preprocess, crop=crop, **options)


def eval_preprocess(
  batch,
  *,
  resize_to: Optional[int],
  crop_size: int,
  views: str = "center",
  mean=IMAGENET_MEAN_RGB,
  std=None,
  dtype=jnp.float32,
):
  """The evaluation views: 'center' ([B, s, s, 3]) or the paper's 'ten_crop' ([B, 10, s, s, 3])."""
  images = batch["image"]
  images = resize(images, resize_to) if resize_to else images.astype(jnp.float32)
  images = normalize(images, _mean_for(mean, images.shape[1:3]), std)
  if views == "center":
    images = center_crop(images, crop_size)
  elif views == "ten_crop":
    images = ten_crop(images, crop_size)
  else:
    raise ValueError(f"Unknown evaluation views {views!r}: expected 'center' or 'ten_crop'.")
  return {**batch, "image": images.astype(dtype)}
