r"""Prepare a dataset once as a TFDS dataset in array_record format (the format training reads).

    python -m alexnet_jax.data.prepare --source=synthetic_shapes --data_dir=~/alexnet_data
    python -m alexnet_jax.data.prepare --source=tfds:imagenette/full-size-v2 --download --squash=224 \
        --image_size=128 --jpeg_quality=70 --chroma_subsampling=4:2:0 --name=imagenette2_128 \
        --data_dir=~/alexnet_data
    python -m alexnet_jax.data.prepare --source=folder:~/imagewoof2 --squash=224 --image_size=128 \
        --jpeg_quality=70 --chroma_subsampling=4:2:0 --name=imagewoof2_128 --data_dir=~/alexnet_data
    python -m alexnet_jax.data.prepare --source=tfds:imagenet2012 --manual_dir=~/imagenet_tars \
        --data_dir=~/alexnet_data --image_size=256

Sources: the embedded `synthetic_shapes`; a folder `root/{train,val}/<class>/*.{jpg,jpeg,png}`; or a TFDS
catalog dataset by name, with its builder config after a slash (`imagenette/full-size-v2`), built by TFDS's
own builder (ImageNet from the tars in its manual_dir). Nothing is downloaded unless `--download` is given.

Sizes. `--image_size=256` stores every image as the paper does (section 2): shorter side rescaled to 256,
then the central 256x256 patch, re-encoded as JPEG, so training decodes small fixed-size images (a TFDS
dataset is first built by TFDS at full size, in DATA_DIR/tfds_full_size, then stored at the size under its
own name). `--squash=N` first resizes every image to NxN, aspect ratio not kept, so `--image_size` then
only rescales the square. With neither, folder images are stored byte for byte as they are, and TFDS
datasets as TFDS builds them. Images are resized with antialiasing by `sources.resize`: OpenCV's INTER_AREA
(each output pixel the mean of the input area it covers) along a side that shrinks, bilinear along one that
grows (Pillow's BILINEAR, which antialiases too, where OpenCV is missing). Every image resized or not a
JPEG is encoded as a JPEG of quality `--jpeg_quality` (default 95) and `--chroma_subsampling`; a greyscale
image is decoded to three equal channels and stays grey.

The study's 128 px sets are fast.ai's Imagenette2 and Imagewoof2 made this way (the second and third
commands above): squashed to 224x224, resized to 128x128, stored as JPEG quality 70. TFDS has no Imagewoof
builder: the third command reads fast.ai's imagewoof2.tgz extracted to ~/imagewoof2. The TFDS Imagenette
builder names fast.ai's `val` split `validation`; stored at a size, it is `val` again, as in fast.ai's
folders, so both sets have the same splits. How the public 128 px copies were resampled, and with which
JPEG encoder, is not known: a copy made here has their sizes, their quality setting and about their file
sizes, but can differ from another copy pixel for pixel.

This is the only module that needs TensorFlow (TFDS writes its examples with it). It writes into a
temporary folder beside the target and renames it into place at the end, so an interrupted or failed run
leaves any dataset already prepared there untouched.
"""

import contextlib
import dataclasses
import glob
import io
import logging as logging_std
import multiprocessing
import os
import shlex
import shutil
import sys
import tempfile

from absl import flags, logging
import numpy as np
from PIL import Image
from tqdm import tqdm

from alexnet_jax import cli, paths
from alexnet_jax.data import sources, synthetic

FLAGS = flags.FLAGS
VERSION = "1.0.0"
JPEG_QUALITY = 95
# Chroma subsampling of the JPEGs written. 4:4:4 (default) keeps colour at full resolution; 4:2:0 halves it
# both ways, as most photos (ImageNet's among them) come, and decodes faster at a small cost in colour
# (figures in experiments/results/benchmark/README.md). The host's decoding bounds training on a fast GPU.
CHROMA_SUBSAMPLINGS = ("4:4:4", "4:2:0")
# Split names of TFDS catalog datasets stored at a size, where they differ from the dataset's own folders:
# TFDS's Imagenette builder calls fast.ai's `val` folder `validation`.
SPLIT_NAMES = {"imagenette": {"validation": "val"}}


@dataclasses.dataclass(frozen=True)
class ImageFormat:
  """How images are stored: squashed to `squash` x `squash` (0: not), then fitted to `image_size` (0: not),
  re-encoded as JPEGs of `quality` with `chroma` subsampling."""

  image_size: int = 0
  squash: int = 0
  chroma: str = "4:4:4"
  quality: int = JPEG_QUALITY

  @property
  def stored_size(self) -> int:
    """The side of every stored image, or 0 where images keep their own sizes."""
    return self.image_size or self.squash

  def check(self) -> "ImageFormat":
    """This format, or a DatasetError saying which setting is out of range and what to use."""
    if self.chroma not in CHROMA_SUBSAMPLINGS:
      raise sources.DatasetError(f"Unknown chroma subsampling {self.chroma!r}: use one of {list(CHROMA_SUBSAMPLINGS)}.")
    if not 1 <= self.quality <= 100:
      raise sources.DatasetError(f"--jpeg_quality={self.quality}: use a JPEG quality from 1 to 100 (default 95).")
    for flag, value in (("image_size", self.image_size), ("squash", self.squash)):
      if value < 0:
        raise sources.DatasetError(f"--{flag}={value}: use a side in pixels, or 0 for none.")
    return self

  def resize(self, image: np.ndarray) -> np.ndarray:
    """The image squashed and fitted as this format says; `image` itself where nothing changes."""
    if self.squash:
      image = sources.resize(image, self.squash, self.squash)
    if self.image_size:
      image = sources.fit_to_size(image, self.image_size)
    return image

  def encode(self, image: np.ndarray) -> bytes:
    """uint8 [H, W, 3] -> JPEG bytes of this format's quality and chroma subsampling."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=self.quality, subsampling=self.chroma)
    return buffer.getvalue()


def _features(class_names, image_size):
  import tensorflow_datasets as tfds  # noqa: PLC0415 - optional: only preparing needs TFDS's writer

  shape = (image_size, image_size, 3) if image_size else (None, None, 3)
  return tfds.features.FeaturesDict(
    {
      "image": tfds.features.Image(shape=shape, encoding_format="jpeg"),
      "label": tfds.features.ClassLabel(names=list(class_names)),
      "file_name": tfds.features.Text(),
    }
  )


def _progress(iterable, total, desc):
  return tqdm(iterable, total=total, desc=desc, unit="img", mininterval=1.0, file=sys.stderr)


def synthetic_examples(split, count, image_size, seed, image_format=ImageFormat()):
  """The examples of the embedded dataset's `split`, as (key, example) pairs for `_store`."""
  for index in _progress(range(count), count, f"synthetic {split}"):
    image, label = synthetic.synthetic_example(seed, split, index, image_size)
    yield index, {"image": io.BytesIO(image_format.encode(image)), "label": label, "file_name": f"{split}/{index}"}


def _in_order(job, items, workers):
  """job(item) for each item, in order: in this process (workers <= 1), or in `workers` spawned processes.
  Decoding, resizing and re-encoding cost about a millisecond per small image: ImageNet's 1.33 million
  larger photos take hours on one core."""
  if workers <= 1:
    yield from map(job, items)
    return
  context = multiprocessing.get_context("spawn")  # fork would copy TensorFlow's threads' state
  with context.Pool(workers) as pool:  # left early (an error while writing): the pool is terminated
    yield from pool.imap(job, items, chunksize=32)


def _folder_example(item):
  """(path, image format) -> the example's image bytes: as they are (a JPEG the format leaves as it is),
  else resized and re-encoded. Every file is decoded, so a broken one fails here with its path."""
  path, image_format = item
  with open(path, "rb") as f:
    data = f.read()
  image = sources.decode_image(data, path=path)
  resized = image_format.resize(image)
  if resized is not image or not path.lower().endswith((".jpg", ".jpeg")):
    data = image_format.encode(resized)
  return data


def folder_examples(files, split, image_format, workers=1):
  """The examples of a folder split's `files` ((path, label) pairs), as (key, example) pairs for `_store`."""
  images = _in_order(_folder_example, [(path, image_format) for path, _ in files], workers)
  for key, ((path, label), data) in enumerate(_progress(zip(files, images), len(files), f"folder {split}")):
    yield key, {"image": io.BytesIO(data), "label": label, "file_name": os.path.relpath(path)}


def _check_data_dir(data_dir):
  if paths.file_in_the_way(data_dir):
    raise sources.DatasetError(
      f"data_dir {data_dir!r} is a file, not a folder: give a folder for prepared datasets (it is created if missing)."
    )


class _DropTfdsNoise(logging_std.Filter):
  """TFDS's warning that the staging folder has no dataset_info.json yet (it is being written)."""

  def filter(self, record):
    return "has no dataset_info.json" not in record.getMessage()


@contextlib.contextmanager
def _quiet_tfds():
  """TFDS's own console lines while it writes a dataset from examples we give it: 'Downloading and
  preparing dataset Unknown size ...' (nothing is downloaded), its progress bars and a staging-folder
  warning. Our own progress bars and messages say what happens instead."""
  import tensorflow_datasets as tfds  # noqa: PLC0415 - optional: only preparing needs TFDS's writer

  noise = _DropTfdsNoise()
  logger = logging_std.getLogger("absl")
  logger.addFilter(noise)
  tfds.disable_progress_bar()
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.enable_progress_bar()
    logger.removeFilter(noise)


def _store(name, data_dir, split_examples, class_names, image_size, description, *, keep_existing=False):
  """Writes the dataset into a temporary folder and moves it to data_dir/name/VERSION on success.

  An existing copy there is replaced, once the new one is complete; with `keep_existing` it is kept and
  the new copy discarded instead, so that several processes may prepare the same dataset at once (the
  first complete copy lands by an atomic rename, the others see it and drop theirs)."""
  import tensorflow_datasets as tfds  # noqa: PLC0415 - optional: only preparing needs TFDS's writer

  target = os.path.join(data_dir, name, VERSION)
  _check_data_dir(data_dir)
  os.makedirs(data_dir, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{name}-", dir=data_dir)
  try:
    with _quiet_tfds():
      builder = tfds.dataset_builders.store_as_tfds_dataset(
        name=name,
        version=VERSION,
        features=_features(class_names, image_size),
        split_datasets=split_examples,
        data_dir=staging,
        description=description,
        file_format="array_record",
        disable_shuffling=True,
      )
    written = builder.data_dir
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target) and not keep_existing:
      shutil.rmtree(target)  # replaced only now that the new copy is complete
    try:
      os.rename(written, target)  # atomic; fails where another process's copy landed first
    except OSError:
      if not (keep_existing and os.path.isdir(target)):
        raise
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return target


def _describe(image_format):
  """The stored images' geometry and encoding, for a dataset's description."""
  steps = [f"squashed to {image_format.squash}x{image_format.squash}"] if image_format.squash else []
  if image_format.image_size:
    steps.append(f"fitted to {image_format.image_size}x{image_format.image_size}")
  steps.append(f"re-encoded as JPEG quality {image_format.quality} {image_format.chroma} where resized")
  return ", ".join(steps)


def prepare_synthetic(
  data_dir,
  *,
  train_size=6000,
  val_size=1000,
  image_size=72,
  seed=0,
  name="synthetic_shapes",
  keep_existing=False,
  jpeg_quality=JPEG_QUALITY,
):
  """Prepares the embedded procedural dataset (synthetic.py).

  Every example is a pure function of (seed, split, index), so copies prepared anywhere are identical.

  Args:
    data_dir: the folder of prepared datasets.
    train_size: examples in the `train` split.
    val_size: examples in the `val` split.
    image_size: the side of every image.
    seed: the seed every example derives from.
    name: the name the dataset is stored under.
    keep_existing: keep a complete copy already there rather than replace it (see `_store`).
    jpeg_quality: the quality of the JPEGs stored.

  Returns:
    The folder written, data_dir/name/VERSION.
  """
  image_format = ImageFormat(quality=jpeg_quality).check()
  splits = {
    "train": synthetic_examples("train", train_size, image_size, seed, image_format),
    "val": synthetic_examples("val", val_size, image_size, seed, image_format),
  }
  return _store(
    name,
    data_dir,
    splits,
    synthetic.CLASS_NAMES,
    image_size,
    f"Procedural shapes ({synthetic.NUM_CLASSES} classes), seed {seed}, {image_size}px.",
    keep_existing=keep_existing,
  )


def prepare_folder(
  root,
  data_dir,
  *,
  name,
  image_size=0,
  splits=("train", "val"),
  limit=None,
  workers=1,
  chroma="4:4:4",
  squash=0,
  jpeg_quality=JPEG_QUALITY,
):
  """Prepares the images of a folder root/<split>/<class>/*.{jpg,jpeg,png}; labels are the class folders.

  Args:
    root: the folder (`~` is expanded).
    data_dir: the folder of prepared datasets.
    name: the name the dataset is stored under.
    image_size: fit every image to this square (shorter side, central crop); 0: keep its size.
    splits: the split folders under root.
    limit: keep an evenly spread subset of at most this many images per split (tests, quick checks).
    workers: processes that decode, resize and re-encode the images.
    chroma: chroma subsampling of the JPEGs written, one of CHROMA_SUBSAMPLINGS.
    squash: first resize every image to squash x squash, aspect ratio not kept; 0: not.
    jpeg_quality: the quality of the JPEGs written (images resized, or not JPEGs).

  Returns:
    The folder written, data_dir/name/VERSION.
  """
  image_format = ImageFormat(image_size=image_size, squash=squash, chroma=chroma, quality=jpeg_quality).check()
  root = os.path.expanduser(root)
  class_names, files = sources.list_image_folder(root, splits)
  if limit:
    files = {s: f[:: max(1, len(f) // limit)][:limit] for s, f in files.items()}
  examples = {s: folder_examples(f, s, image_format, workers) for s, f in files.items()}
  stored_size = image_format.stored_size or _common_square_size(path for f in files.values() for path, _ in f)
  return _store(
    name,
    data_dir,
    examples,
    class_names,
    stored_size,
    f"Images from {os.path.abspath(root)}, {_describe(image_format)}.",
  )


def _common_square_size(paths) -> int:
  """The side shared by all images when they are equal squares (read from headers only), else 0."""
  sizes = set()
  for path in paths:
    try:
      with Image.open(path) as image:
        sizes.add(image.size)
    except Exception:
      return 0  # folder_examples reports the unreadable file with its path
    if len(sizes) > 1:
      return 0
  ((width, height),) = sizes
  return width if width == height else 0


def prepare_subset(source_dir, source_name, data_dir, *, name, per_split):
  """Stores an evenly spread subset of a prepared dataset's splits, its records as they are.

  Args:
    source_dir: the data_dir of the prepared dataset read.
    source_name: its name.
    data_dir: where the subset is stored.
    name: the name the subset is stored under.
    per_split: at most this many examples of each split, evenly spread over it (over every class of a
      dataset stored class by class).

  Returns:
    The folder written, data_dir/name/VERSION.
  """
  info = sources.dataset_info(source_dir, source_name)

  def examples(split):
    records = sources.open_split(info, split)
    keys = list(range(0, len(records), max(1, len(records) // per_split)))[:per_split]
    for key, record in enumerate(sources.read_records(records, keys)):
      example = sources.parse_example(record)
      yield (
        key,
        {
          "image": io.BytesIO(example["image"]),
          "label": example["label"],
          "file_name": example.get("file_name", f"{split}/{keys[key]}"),
        },
      )

  splits = {split: examples(split) for split in info.split_sizes}
  description = f"{per_split} examples per split of {info.path}."
  return _store(name, data_dir, splits, info.class_names, info.image_size, description)


def _check_sized_options(name, stored_name, jpeg_quality, sized) -> None:
  """DatasetError for a --name or --jpeg_quality that only a copy stored at a size can take."""
  if stored_name and not sized:
    raise sources.DatasetError(
      f"--name={stored_name} renames a TFDS dataset only when it is stored at a size "
      f"(--image_size=256, say); TFDS's own build keeps the name {name!r}."
    )
  if jpeg_quality != JPEG_QUALITY and not sized:
    raise sources.DatasetError(
      f"--jpeg_quality={jpeg_quality} sets the quality of images stored at a size: add --image_size or "
      f"--squash, or leave it out to keep TFDS's own build."
    )


def _catalog_builder(name, build_dir, manual_dir, download):
  """TFDS's builder of catalog dataset `name` in build_dir, once its files or the right to download them
  are there; DatasetError (what to pass) otherwise."""
  import tensorflow_datasets as tfds  # noqa: PLC0415 - optional: only preparing needs TFDS's builders

  try:
    builder = tfds.builder(name, data_dir=build_dir, try_gcs=False)
  except Exception as e:  # unknown name or config
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise sources.DatasetError(
      f"TFDS has no dataset {name!r} ({reason}). See the TFDS catalog for names (NAME or NAME/CONFIG)."
    ) from None
  needs_manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
  if needs_manual and not manual_dir:
    raise sources.DatasetError(
      f"{name} is built from files you download yourself: pass --manual_dir=FOLDER "
      f"holding them ({' '.join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())[:300]})."
    )
  if needs_manual and not os.path.isdir(os.path.expanduser(manual_dir)):
    raise sources.DatasetError(
      f"--manual_dir {manual_dir!r} is not a folder. It must hold the files that {name} is built from."
    )
  if not needs_manual and not download:
    raise sources.DatasetError(
      f"Preparing {name} downloads it. Nothing is downloaded unless asked: run "
      f"again with --download, or prepare a local copy with --source=folder:PATH."
    )
  return builder


def prepare_catalog(
  name,
  data_dir,
  *,
  manual_dir=None,
  download=False,
  image_size=0,
  stored_name=None,
  workers=1,
  chroma="4:4:4",
  squash=0,
  jpeg_quality=JPEG_QUALITY,
):
  """Builds a TFDS catalog dataset (e.g. imagenet2012 from its manual_dir tars) in array_record format.

  Without a size (image_size and squash 0) this is TFDS's own build, in data_dir, images as TFDS stores
  them (ImageNet's full-size photos). With one, TFDS's build goes to data_dir/tfds_full_size (kept: a second
  run reuses it), then every image is squashed and fitted (section 2: shorter side to image_size, central
  crop) and stored as data_dir/<stored_name>/VERSION, so training decodes small fixed-size JPEGs.

  Args:
    name: the TFDS catalog name, with a builder config after a slash (`imagenette/full-size-v2`).
    data_dir: the folder of prepared datasets.
    manual_dir: the folder holding the files of a dataset built from files users download themselves.
    download: let TFDS download the dataset; nothing is downloaded otherwise.
    image_size: fit every image to this square; 0: keep its size.
    stored_name: the name a copy stored at a size gets (default: `catalog_name(name)`).
    workers: processes that decode, resize and re-encode the images.
    chroma: chroma subsampling of the JPEGs written, one of CHROMA_SUBSAMPLINGS.
    squash: first resize every image to squash x squash, aspect ratio not kept; 0: not.
    jpeg_quality: the quality of the JPEGs written.

  Returns:
    The folder of the prepared dataset's version.
  """
  import tensorflow_datasets as tfds  # noqa: PLC0415 - optional: only preparing needs TFDS's builders

  image_format = ImageFormat(image_size=image_size, squash=squash, chroma=chroma, quality=jpeg_quality).check()
  sized = image_format.stored_size > 0
  _check_sized_options(name, stored_name, jpeg_quality, sized)
  stored_name = stored_name or catalog_name(name, sized=sized)
  _check_data_dir(data_dir)
  if sized:
    _check_not_shadowed(data_dir, stored_name)
  build_dir = os.path.join(data_dir, FULL_SIZE_DIR) if sized else data_dir
  builder = _catalog_builder(name, build_dir, manual_dir, download)
  # The builder's own sources (fast.ai's archives, ImageNet's tars), never TFDS's prepared copies on GCS.
  config = tfds.download.DownloadConfig(
    manual_dir=os.path.expanduser(manual_dir) if manual_dir else None, try_download_gcs=False
  )
  builder.download_and_prepare(download_config=config, file_format="array_record")
  if not sized:
    return builder.data_dir
  info = sources.dataset_info(build_dir, name, path=builder.data_dir)
  renamed = SPLIT_NAMES.get(name.split("/")[0], {})
  splits = {
    renamed.get(split, split): catalog_examples(info, split, image_format, workers) for split in info.split_sizes
  }
  target = _store(
    stored_name,
    data_dir,
    splits,
    info.class_names,
    image_format.stored_size,
    f"TFDS {name} {os.path.basename(builder.data_dir)}, {_describe(image_format)}.",
  )
  logging.info(
    "TFDS's full-size build (and its downloads, if any) stays in %s for another size; delete it if you need the space.",
    os.path.join(data_dir, FULL_SIZE_DIR),
  )
  return target


FULL_SIZE_DIR = "tfds_full_size"  # under data_dir: TFDS's own build of a catalog dataset stored at a size


def _check_not_shadowed(data_dir, name):
  """Refuses to store `name` at a size in data_dir where TFDS's own build of it (another version) lies:
  readers take the newest version, which would be that build, not the copy prepared here."""
  for info_file in glob.glob(os.path.join(data_dir, name, "**", "dataset_info.json"), recursive=True):
    version_dir = os.path.dirname(info_file)
    if os.path.basename(version_dir) != VERSION:
      raise sources.DatasetError(
        f"{version_dir!r} already holds a build of {name!r} (version {os.path.basename(version_dir)}), which "
        f"training would read instead of the {VERSION} copy this command stores. Store it under another "
        f"name (--name={name}_sized, then --config.dataset.name={name}_sized) or in another --data_dir; "
        f"nothing was changed."
      )


_OPEN_SPLITS = {}  # (dataset path, split) -> its records, opened once per process


def _catalog_example(item):
  """(info, split, key, image format) -> (label, file name, the image resized and re-encoded)."""
  info, split, key, image_format = item
  if (info.path, split) not in _OPEN_SPLITS:
    _OPEN_SPLITS[info.path, split] = sources.open_split(info, split)
  example = sources.parse_example(_OPEN_SPLITS[info.path, split][key])
  image = sources.decode_image(example["image"], path=f"{info.path} {split}[{key}]")
  return example["label"], example.get("file_name", f"{split}/{key}"), image_format.encode(image_format.resize(image))


def catalog_examples(info, split, image_format, workers=1):
  """The examples of a built TFDS dataset's split, each image resized and re-encoded as `image_format` says."""
  count = info.split_sizes[split]
  items = ((info, split, key, image_format) for key in range(count))
  examples = _progress(_in_order(_catalog_example, items, workers), count, f"{info.name} {split}")
  for key, (label, file_name, data) in enumerate(examples):
    yield key, {"image": io.BytesIO(data), "label": label, "file_name": file_name}


def parse_source(source):
  """'synthetic_shapes' | 'folder:PATH' | 'tfds:NAME' -> (kind, value)."""
  if source == "synthetic_shapes":
    return "synthetic", None
  for kind in ("folder", "tfds"):
    if source.startswith(kind + ":") and len(source) > len(kind) + 1:
      return kind, source[len(kind) + 1 :]
  raise sources.DatasetError(
    f"Unknown --source={source!r}: expected synthetic_shapes, folder:PATH "
    f"(PATH/<split>/<class>/*.jpg) or tfds:NAME (a TFDS catalog dataset)."
  )


def catalog_name(name, *, sized=True):
  """The name a TFDS catalog dataset is stored under without --name.

  Args:
    name: its catalog name, perhaps with a builder config (`imagenette/full-size-v2`).
    sized: whether it is stored at a size (a copy of our own) rather than as TFDS builds it.

  Returns:
    `name` itself for TFDS's own build (training finds it so); for a copy at a size the name with `/` and
    `-` made `_` (`imagenette_full_size_v2`): a dataset name TFDS accepts.
  """
  return name.replace("/", "_").replace("-", "_") if sized else name


def stored_name(flag_values):
  """The name of the dataset a prepare command line stores.

  Args:
    flag_values: its parsed flags (`parse_flags`).

  Returns:
    --name where given, else the source's own name: synthetic_shapes, the folder's name (lower case, `-`
    made `_`) or `catalog_name` of the TFDS name.
  """
  if flag_values.name:
    return flag_values.name
  kind, value = parse_source(flag_values.source)
  if kind == "synthetic":
    return "synthetic_shapes"
  if kind == "folder":
    return sources.folder_dataset_name(value)
  return catalog_name(value, sized=bool(flag_values.image_size or flag_values.squash))


def parse_flags(argv):
  """This command's flags, parsed from `argv` (its arguments, without the program name).

  Args:
    argv: e.g. `shlex.split(config.dataset.prepare_args)`.

  Returns:
    A FlagValues with every flag of `define_flags`; absl's flags.Error on an unknown flag or a bad value.
  """
  flag_values = flags.FlagValues()
  define_flags(flag_values)
  flag_values(["prepare"] + list(argv))
  return flag_values


def command_for(name, data_dir, prepare_args=None):
  """The command line that prepares dataset `name` in data_dir, for a "not prepared" message.

  Args:
    name: the dataset asked for (`config.dataset.name`).
    data_dir: the folder of prepared datasets, as the user gave it.
    prepare_args: the config's `dataset.prepare_args`, the flags of the command that makes its dataset.

  Returns:
    `python -m alexnet_jax.data.prepare PREPARE_ARGS --data_dir=DATA_DIR` where those flags store a dataset
    named `name`; otherwise what makes that name from scratch (`sources.prepare_command`): the embedded
    set, `--source=tfds:NAME` for a TFDS catalog name, else `--source=folder:PATH --name=NAME`.
  """
  if prepare_args:
    try:
      prepares = stored_name(parse_flags(shlex.split(prepare_args)))
    except (flags.Error, ValueError, sources.DatasetError):
      prepares = None
    if prepares == name:
      return f"python -m alexnet_jax.data.prepare {prepare_args} --data_dir={data_dir}"
  return sources.prepare_command(name, data_dir)


def prepare_from_flags(flag_values):
  """Prepares the dataset a command line asks for.

  Args:
    flag_values: its parsed flags (`parse_flags`, or the process's FLAGS).

  Returns:
    The folder of the prepared dataset's version.
  """
  f = flag_values
  if f.workers < 0:
    raise sources.DatasetError(f"--workers={f.workers}: use 0 (one process per core) or more.")
  data_dir = os.path.expanduser(f.data_dir)
  workers = f.workers or (os.cpu_count() or 1)
  kind, value = parse_source(f.source)
  name = stored_name(f)
  if kind == "synthetic":
    if f.squash:
      raise sources.DatasetError("--squash applies to folder and tfds sources: synthetic_shapes images are square.")
    return prepare_synthetic(
      data_dir,
      train_size=f.train_size,
      val_size=f.val_size,
      image_size=f.image_size or 72,
      seed=f.seed,
      name=name,
      jpeg_quality=f.jpeg_quality,
    )
  common = dict(
    image_size=f.image_size, workers=workers, chroma=f.chroma_subsampling, squash=f.squash, jpeg_quality=f.jpeg_quality
  )
  if kind == "folder":
    return prepare_folder(value, data_dir, name=name, splits=tuple(f.splits), limit=f.limit, **common)
  return prepare_catalog(value, data_dir, manual_dir=f.manual_dir, download=f.download, stored_name=f.name, **common)


def main(argv):
  del argv
  try:
    path = prepare_from_flags(FLAGS)
  except sources.DatasetError as e:  # one line saying what is wrong and what to do
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"Prepared {FLAGS.source} in {path}")


def define_flags(flag_values=FLAGS):
  """Defines this command's flags in `flag_values` (the process's FLAGS by default)."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string(
    "source",
    "synthetic_shapes",
    "synthetic_shapes | folder:PATH (PATH/<split>/<class>/*.jpg) | tfds:NAME or tfds:NAME/CONFIG (TFDS catalog).",
    **fv,
  )
  flags.DEFINE_string("data_dir", "~/alexnet_data", "Where prepared datasets live (data_dir/<name>/<version>).", **fv)
  flags.DEFINE_string(
    "name",
    None,
    "Name to store the dataset under (default: the folder's name in lower case, or the TFDS name, with / and - made _, "
    "synthetic_shapes). Not for TFDS sources stored without a size (TFDS names those).",
    **fv,
  )
  flags.DEFINE_integer(
    "image_size",
    0,
    "Store images at this square size (shorter side, centre crop; the paper: 256). 0 keeps folder and TFDS "
    "images as they are (synthetic default: 72). A TFDS dataset is built full size first, in "
    "DATA_DIR/tfds_full_size.",
    **fv,
  )
  flags.DEFINE_integer(
    "squash",
    0,
    "First resize every image to this square size, aspect ratio not kept (before --image_size; the study's "
    "Imagenette and Imagewoof: 224). 0: not.",
    **fv,
  )
  flags.DEFINE_integer(
    "jpeg_quality", JPEG_QUALITY, "Quality (1-100) of the JPEGs written: images resized, or not JPEGs.", **fv
  )
  flags.DEFINE_list("splits", ["train", "val"], "Split folders of a folder source.", **fv)
  flags.DEFINE_enum(
    "chroma_subsampling",
    "4:4:4",
    list(CHROMA_SUBSAMPLINGS),
    "Chroma subsampling of the JPEGs written (images resized, or not JPEGs): 4:2:0 decodes faster, with "
    "colour at half resolution.",
    **fv,
  )
  flags.DEFINE_integer(
    "workers", 0, "Processes that decode, resize and re-encode folder and TFDS images (0: one per core).", **fv
  )
  flags.DEFINE_integer(
    "limit", None, "Folder sources: keep at most this many images per split (an evenly spread subset).", **fv
  )
  flags.DEFINE_integer("train_size", 6000, "synthetic_shapes: training examples.", **fv)
  flags.DEFINE_integer("val_size", 1000, "synthetic_shapes: validation examples.", **fv)
  flags.DEFINE_integer("seed", 0, "synthetic_shapes: the seed every example derives from.", **fv)
  flags.DEFINE_string(
    "manual_dir",
    None,
    "tfds sources: the folder with manually downloaded files "
    "(imagenet2012: ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar).",
    **fv,
  )
  flags.DEFINE_bool("download", False, "tfds sources: allow TFDS to download the data. Off by default.", **fv)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
