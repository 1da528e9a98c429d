r"""Prepare a dataset once as a TFDS dataset in array_record format (the format training reads).

    python -m alexnet_jax.data.prepare --source=synthetic_shapes --data_dir=~/alexnet_data
    python -m alexnet_jax.data.prepare --source=folder:../shared/datasets/imagenette2-128 \
        --name=imagenette2_128 --data_dir=~/alexnet_data
    python -m alexnet_jax.data.prepare --source=tfds:imagenet2012 --manual_dir=~/imagenet_tars \
        --data_dir=~/alexnet_data --image_size=256
    python -m alexnet_jax.data.prepare --source=tfds:imagenette --download --data_dir=~/alexnet_data

Sources: the embedded `synthetic_shapes`; a folder `root/{train,val}/<class>/*.{jpg,jpeg,png}`; or a TFDS
catalog dataset by name, built by TFDS's own builder (ImageNet from the tars in its manual_dir). Nothing is
downloaded unless `--download` is given.

`--image_size=256` stores every image as the paper does (section 2): shorter side rescaled to 256, then
the central 256x256 patch, re-encoded as JPEG, so training decodes small fixed-size images (a TFDS dataset
is first built by TFDS at full size, in DATA_DIR/tfds_full_size, then stored at the size under its own
name). With `--image_size=0` folder images are stored byte for byte as they are, and TFDS datasets as TFDS
builds them.

This is the only module that needs TensorFlow (TFDS writes its examples with it). It writes into a
temporary folder beside the target and renames it into place at the end, so an interrupted or failed run
leaves any dataset already prepared there untouched.
"""

import contextlib
import glob
import io
import logging as logging_std
import multiprocessing
import os
import shutil
import sys
import tempfile

from absl import flags, logging
import numpy as np

from alexnet_jax import cli, paths
from alexnet_jax.data import sources, synthetic

FLAGS = flags.FLAGS
VERSION = "1.0.0"
JPEG_QUALITY = 95
# Chroma subsampling of the JPEGs written. 4:4:4 (default) keeps colour at full resolution; 4:2:0 halves it
# both ways, as most photos (ImageNet's among them) come, and decodes faster at a small cost in colour
# (figures in experiments/results/benchmark/README.md). The host's decoding bounds training on a fast GPU.
CHROMA_SUBSAMPLINGS = ("4:4:4", "4:2:0")


def _jpeg_bytes(image: np.ndarray, chroma: str = "4:4:4") -> bytes:
  from PIL import Image

  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=chroma)
  return buffer.getvalue()


def _check_chroma(chroma):
  if chroma not in CHROMA_SUBSAMPLINGS:
    raise sources.DatasetError(f"Unknown chroma subsampling {chroma!r}: use one of {list(CHROMA_SUBSAMPLINGS)}.")


def _features(class_names, image_size):
  import tensorflow_datasets as tfds

  shape = (image_size, image_size, 3) if image_size else (None, None, 3)
  return tfds.features.FeaturesDict(
    {
      "image": tfds.features.Image(shape=shape, encoding_format="jpeg"),
      "label": tfds.features.ClassLabel(names=list(class_names)),
      "file_name": tfds.features.Text(),
    }
  )


def _progress(iterable, total, desc):
  from tqdm import tqdm

  return tqdm(iterable, total=total, desc=desc, unit="img", mininterval=1.0, file=sys.stderr)


def synthetic_examples(split, count, image_size, seed):
  for index in _progress(range(count), count, f"synthetic {split}"):
    image, label = synthetic.synthetic_example(seed, split, index, image_size)
    yield index, {"image": io.BytesIO(_jpeg_bytes(image)), "label": label, "file_name": f"{split}/{index}"}


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
  """(path, label, image_size, chroma) -> the example's image bytes: as they are (a JPEG of the right
  size), else fitted and re-encoded. Every file is decoded, so a broken one fails here with its path."""
  path, label, image_size, chroma = item
  with open(path, "rb") as f:
    data = f.read()
  image = sources.decode_image(data, path=path)
  if image_size and image.shape[:2] != (image_size, image_size):
    data = _jpeg_bytes(sources.fit_to_size(image, image_size), chroma)
  elif not path.lower().endswith((".jpg", ".jpeg")):
    data = _jpeg_bytes(image, chroma)
  return data


def folder_examples(files, image_size, split, workers=1, chroma="4:4:4"):
  images = _in_order(_folder_example, [(path, label, image_size, chroma) for path, label in files], workers)
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
  import tensorflow_datasets as tfds

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
  import tensorflow_datasets as tfds

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


def prepare_synthetic(
  data_dir, *, train_size=6000, val_size=1000, image_size=72, seed=0, name="synthetic_shapes", keep_existing=False
):
  """The embedded procedural dataset (synthetic.py); every example is a pure function of (seed, split,
  index), so copies prepared anywhere are identical. `keep_existing`: see `_store`."""
  splits = {
    "train": synthetic_examples("train", train_size, image_size, seed),
    "val": synthetic_examples("val", val_size, image_size, seed),
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
  root, data_dir, *, name, image_size=0, splits=("train", "val"), limit=None, workers=1, chroma="4:4:4"
):
  """Prepares root/<split>/<class>/* ; `limit` keeps an evenly spread subset of each split (tests);
  `workers` processes decode (and resize, re-encode with `chroma` subsampling) the images."""
  _check_chroma(chroma)
  class_names, files = sources.list_image_folder(root, splits)
  if limit:
    files = {s: f[:: max(1, len(f) // limit)][:limit] for s, f in files.items()}
  examples = {s: folder_examples(f, image_size, s, workers, chroma) for s, f in files.items()}
  stored_size = image_size or _common_square_size(path for f in files.values() for path, _ in f)
  return _store(name, data_dir, examples, class_names, stored_size, f"Images from {os.path.abspath(root)}.")


def _common_square_size(paths) -> int:
  """The side shared by all images when they are equal squares (read from headers only), else 0."""
  from PIL import Image

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


def prepare_catalog(
  name, data_dir, *, manual_dir=None, download=False, image_size=0, stored_name=None, workers=1, chroma="4:4:4"
):
  """Builds a TFDS catalog dataset (e.g. imagenet2012 from its manual_dir tars) in array_record format.

  image_size 0: TFDS's own build, in data_dir (images as TFDS stores them: ImageNet's full-size photos).
  image_size S > 0: TFDS's build goes to data_dir/tfds_full_size (kept: a second run reuses it), then
  every image is fitted to S x S (section 2: shorter side to S, central crop) and stored as
  data_dir/<stored_name or name>/1.0.0, so training decodes small fixed-size JPEGs."""
  import tensorflow_datasets as tfds

  if stored_name and not image_size:
    raise sources.DatasetError(
      f"--name={stored_name} renames a TFDS dataset only when it is stored at a size "
      f"(--image_size=256, say); TFDS's own build keeps the name {name!r}."
    )
  stored_name = stored_name or name
  _check_data_dir(data_dir)
  _check_chroma(chroma)
  if image_size:
    _check_not_shadowed(data_dir, stored_name)
  build_dir = os.path.join(data_dir, FULL_SIZE_DIR) if image_size else data_dir
  try:
    builder = tfds.builder(name, data_dir=build_dir, try_gcs=False)
  except Exception as e:  # unknown name
    raise sources.DatasetError(f"TFDS has no dataset {name!r} ({e}). See the TFDS catalog for names.")
  needs_manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
  if needs_manual and not manual_dir:
    raise sources.DatasetError(
      f"{name} is built from files you download yourself: pass --manual_dir=FOLDER "
      f"holding them ({builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()[:300]})."
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
  config = tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir) if manual_dir else None)
  builder.download_and_prepare(download_config=config, file_format="array_record")
  if not image_size:
    return builder.data_dir
  info = sources.dataset_info(build_dir, name, path=builder.data_dir)
  splits = {split: catalog_examples(info, split, image_size, workers, chroma) for split in info.split_sizes}
  target = _store(
    stored_name,
    data_dir,
    splits,
    info.class_names,
    image_size,
    f"TFDS {name} {os.path.basename(builder.data_dir)}, images fitted to {image_size}x{image_size}, JPEG {chroma}.",
  )
  logging.info(
    "TFDS's full-size build stays in %s for another --image_size; delete it if you need the space.", builder.data_dir
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
  """(info, split, key, image_size, chroma) -> (label, file name, the image fitted and re-encoded)."""
  info, split, key, image_size, chroma = item
  if (info.path, split) not in _OPEN_SPLITS:
    _OPEN_SPLITS[info.path, split] = sources.open_split(info, split)
  example = sources.parse_example(_OPEN_SPLITS[info.path, split][key])
  image = sources.decode_image(example["image"], path=f"{info.path} {split}[{key}]")
  return (
    example["label"],
    example.get("file_name", f"{split}/{key}"),
    _jpeg_bytes(sources.fit_to_size(image, image_size), chroma),
  )


def catalog_examples(info, split, image_size, workers=1, chroma="4:4:4"):
  """The examples of a built TFDS dataset's split, each image fitted to image_size and re-encoded."""
  count = info.split_sizes[split]
  examples = _in_order(_catalog_example, ((info, split, key, image_size, chroma) for key in range(count)), workers)
  examples = _progress(examples, count, f"{info.name} {split} -> {image_size}px")
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


def main(argv):
  del argv
  data_dir = os.path.expanduser(FLAGS.data_dir)
  workers = FLAGS.workers if FLAGS.workers > 0 else (os.cpu_count() or 1)
  try:
    if FLAGS.workers < 0:
      raise sources.DatasetError(f"--workers={FLAGS.workers}: use 0 (one process per core) or more.")
    kind, value = parse_source(FLAGS.source)
    if kind == "synthetic":
      path = prepare_synthetic(
        data_dir,
        train_size=FLAGS.train_size,
        val_size=FLAGS.val_size,
        image_size=FLAGS.image_size or 72,
        seed=FLAGS.seed,
        name=FLAGS.name or "synthetic_shapes",
      )
    elif kind == "folder":
      name = FLAGS.name or os.path.basename(os.path.normpath(value)).replace("-", "_").lower()
      path = prepare_folder(
        value,
        data_dir,
        name=name,
        image_size=FLAGS.image_size,
        splits=tuple(FLAGS.splits),
        limit=FLAGS.limit,
        workers=workers,
        chroma=FLAGS.chroma_subsampling,
      )
    else:
      path = prepare_catalog(
        value,
        data_dir,
        manual_dir=FLAGS.manual_dir,
        download=FLAGS.download,
        image_size=FLAGS.image_size,
        stored_name=FLAGS.name,
        workers=workers,
        chroma=FLAGS.chroma_subsampling,
      )
  except sources.DatasetError as e:  # one line saying what is wrong and what to do
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"Prepared {FLAGS.source} in {path}")


def define_flags():
  flags.DEFINE_string(
    "source",
    "synthetic_shapes",
    "synthetic_shapes | folder:PATH (PATH/<split>/<class>/*.jpg) | tfds:NAME (TFDS catalog).",
  )
  flags.DEFINE_string("data_dir", "~/alexnet_data", "Where prepared datasets live (data_dir/<name>/<version>).")
  flags.DEFINE_string(
    "name",
    None,
    "Name to store the dataset under (default: the folder's name, the TFDS "
    "name, synthetic_shapes). Not for TFDS sources without --image_size (TFDS names those).",
  )
  flags.DEFINE_integer(
    "image_size",
    0,
    "Store images at this square size (shorter side, centre crop; the "
    "paper: 256). 0 keeps folder and TFDS images as they are (synthetic default: 72). A "
    "TFDS dataset is built full size first, in DATA_DIR/tfds_full_size.",
  )
  flags.DEFINE_list("splits", ["train", "val"], "Split folders of a folder source.")
  flags.DEFINE_enum(
    "chroma_subsampling",
    "4:4:4",
    list(CHROMA_SUBSAMPLINGS),
    "Chroma subsampling of the "
    "JPEGs written (resized or re-encoded images): 4:2:0 decodes faster, with colour at half "
    "resolution.",
  )
  flags.DEFINE_integer(
    "workers", 0, "Processes that decode, resize and re-encode folder and TFDS images (0: one per core)."
  )
  flags.DEFINE_integer(
    "limit", None, "Folder sources: keep at most this many images per split (an evenly spread subset)."
  )
  flags.DEFINE_integer("train_size", 6000, "synthetic_shapes: training examples.")
  flags.DEFINE_integer("val_size", 1000, "synthetic_shapes: validation examples.")
  flags.DEFINE_integer("seed", 0, "synthetic_shapes: the seed every example derives from.")
  flags.DEFINE_string(
    "manual_dir",
    None,
    "tfds sources: the folder with manually downloaded files "
    "(imagenet2012: ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar).",
  )
  flags.DEFINE_bool("download", False, "tfds sources: allow TFDS to download the data. Off by default.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
