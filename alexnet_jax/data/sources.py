"""Finding, opening and decoding prepared datasets, and scanning image folders. Never imports TensorFlow.

A prepared dataset is a TFDS dataset in array_record format under `data_dir/<name>/[<config>/]<version>/`,
written by `python -m alexnet_jax.data.prepare`. TFDS's builder (`tfds.builder_from_directory`) says which
array_record file slices make a split; the records are read straight from those files, with TFDS's feature
decoding skipped: the host decodes JPEG/PNG bytes itself, always to 3 RGB channels, so greyscale photos need
no special case. JPEGs go to libjpeg-turbo through simplejpeg, anything it refuses (PNG, damaged files) to
OpenCV, then Pillow: all three give the same pixels for a JPEG they all read (EXIF orientation
ignored, as TensorFlow, torchvision and Pillow do), so which of them is installed never changes the data.
"""

import dataclasses
import functools
import glob
import io
import json
import os
from typing import Dict, List, Sequence, Tuple

from array_record.python import array_record_module
import numpy as np
from PIL import Image

from alexnet_jax import paths

try:  # OpenCV where installed, else Pillow; both give RGB uint8 here.
  import cv2

  cv2.setNumThreads(1)  # one decode per worker process; parallelism comes from the workers
except ImportError:  # pragma: no cover - exercised on machines without OpenCV
  cv2 = None

try:  # libjpeg-turbo's own decoder (the one OpenCV bundles), without OpenCV's per-image overhead
  import simplejpeg
except ImportError:  # pragma: no cover - exercised on machines without it: OpenCV decodes instead
  simplejpeg = None

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class DatasetError(Exception):
  """Bad or missing data: the message names the path, what was expected and the command that fixes it."""


class DatasetNotPrepared(DatasetError):
  """No prepared copy of the dataset in data_dir at all (as opposed to one that is there but unusable):
  the one case where training may prepare the embedded dataset itself."""


def prepare_command(name: str, data_dir: str, source: str = None) -> str:
  """The `python -m alexnet_jax.data.prepare` command line that stores a dataset named `name` in data_dir.

  Args:
    name: the dataset's name, as training asks for it (`--config.dataset.name`).
    data_dir: the folder of prepared datasets.
    source: the `--source` to give; by default the embedded set for `synthetic_shapes`, a TFDS catalog
      dataset by its name (with `--manual_dir` or `--download`, as its builder needs), else a folder of
      images stored under the name.

  Returns:
    The command, one line; PATH or FOLDER stand for what the user fills in.
  """
  if source is None:
    source = _source_for(name)
  command = f"python -m alexnet_jax.data.prepare --source={source}"
  if source.startswith("folder:") and name != folder_dataset_name(source[len("folder:") :]):
    command += f" --name={name}"
  return f"{command} --data_dir={data_dir}"


def folder_dataset_name(path: str) -> str:
  """The name a folder of images is stored under when no --name is given: its own, lower case, `-` made `_`.

  Args:
    path: the folder.

  Returns:
    e.g. `imagewoof2_320` for `~/imagewoof2-320/`.
  """
  return os.path.basename(os.path.normpath(path)).replace("-", "_").lower()


def _source_for(name: str) -> str:
  """The --source that makes dataset `name`: the embedded set, a TFDS catalog dataset, else a folder."""
  if name == "synthetic_shapes":
    return name
  builder = _catalog_builder_class(name)
  if builder is None:
    return "folder:PATH"
  needs_files = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
  return f"tfds:{name} " + ("--manual_dir=FOLDER" if needs_files else "--download")


def _catalog_builder_class(name: str):
  """TFDS's builder class of catalog dataset `name` (a config after a slash allowed), else None."""
  try:
    import tensorflow_datasets as tfds  # noqa: PLC0415 - only for this message; importing it takes a second

    return tfds.builder_cls(name.split("/")[0])
  except Exception:  # not installed, or no such dataset in the catalog
    return None


# ---------------------------------------------------------------------------------------------------------
# Image folders: root/<split>/<class>/*.{jpg,jpeg,png}


def list_image_folder(root: str, splits: Sequence[str] = ("train", "val")) -> Tuple[List[str], Dict]:
  """Lists the images of a folder root/<split>/<class>/<image>; the class folders are the labels.

  Args:
    root: the folder.
    splits: the split folders under it.

  Returns:
    (class names, sorted, {split: [(path, label), ...]}); a DatasetError when root is missing or a file, a
    split is missing or empty, or the splits do not share one class set.
  """
  if not os.path.exists(root):
    raise DatasetError(
      f"Image folder {root!r} does not exist. Expected {root}/<split>/<class>/*.jpg with splits {list(splits)}."
    )
  if not os.path.isdir(root):
    raise DatasetError(f"{root!r} is a file, not a folder. Expected {root}/<split>/<class>/*.jpg.")
  class_sets, files = {}, {}
  for split in splits:
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
      raise DatasetError(
        f"Missing split folder {split_dir!r}. Expected {root}/<split>/<class>/*.jpg "
        f"for each of the splits {list(splits)}."
      )
    classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    class_sets[split] = classes
    files[split] = [
      (path, c)
      for c in classes
      for path in sorted(glob.glob(os.path.join(split_dir, c, "*")))
      if path.lower().endswith(IMAGE_EXTENSIONS)
    ]
    if not files[split]:
      raise DatasetError(
        f"No images in {split_dir!r}: expected class folders holding "
        f"{'/'.join(IMAGE_EXTENSIONS)} files, e.g. {split_dir}/<class>/0001.jpg."
      )
  reference = class_sets[splits[0]]
  for split in splits[1:]:
    if class_sets[split] != reference:
      only_a = sorted(set(reference) - set(class_sets[split]))
      only_b = sorted(set(class_sets[split]) - set(reference))
      raise DatasetError(
        f"The splits of {root!r} have different classes: only in {splits[0]}: {only_a[:5]}, "
        f"only in {split}: {only_b[:5]}. Every split needs the same class folders."
      )
  index = {c: i for i, c in enumerate(reference)}
  return reference, {s: [(p, index[c]) for p, c in files[s]] for s in splits}


# ---------------------------------------------------------------------------------------------------------
# Decoding


# OpenCV >= 4.10 decodes straight to RGB (the JPEG decoder writes RGB): no separate BGR->RGB pass.
_CV2_READ_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None) if cv2 is not None else None
_JPEG_START = b"\xff\xd8"  # the start-of-image marker every JPEG file begins with


def _decode_jpeg_turbo(data: bytes, out: np.ndarray = None):
  """A JPEG -> uint8 [H, W, 3] RGB through simplejpeg, written into `out` when it is given and large enough
  (the array returned then views `out`'s first H * W * 3 bytes); None where simplejpeg is not installed
  or does not take this file: not a JPEG, a damaged one, or an `out` too small. (Greyscale and CMYK JPEGs
  come out as OpenCV gives them: tests/test_data.py compares every kind.)

  The same libjpeg-turbo and the same settings as OpenCV's imdecode (accurate integer DCT, smooth chroma
  upsampling), so the same pixels, faster (experiments/results/benchmark/README.md): JPEG decoding is what
  bounds the input pipeline."""
  if simplejpeg is None or data[:2] != _JPEG_START:
    return None
  try:
    return simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
  except ValueError:  # OpenCV and Pillow try it next, and their error is the one reported
    return None


def decode_image(data: bytes, *, path: str = "<bytes>") -> np.ndarray:
  """Decodes JPEG or PNG bytes to RGB; greyscale and RGBA become RGB, EXIF orientation is ignored.

  Args:
    data: the encoded image.
    path: where it came from, for the error message.

  Returns:
    uint8 [H, W, 3]; a DatasetError naming `path` where the bytes are no image.
  """
  image = _decode_jpeg_turbo(data)
  if image is not None:
    return image
  if cv2 is not None:
    buffer = np.frombuffer(data, np.uint8)
    if _CV2_READ_RGB is not None:
      image = cv2.imdecode(buffer, _CV2_READ_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
      if image is not None:
        return image
    else:
      image = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
      if image is not None:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert("RGB"))
  except Exception as e:
    raise DatasetError(
      f"Cannot decode image {path!r} ({e}). Remove or replace the file, then prepare the dataset again."
    ) from None


def decode_fitted_into(data: bytes, out: np.ndarray) -> None:
  """JPEG/PNG bytes -> `out` (uint8 [S, S, 3], C-contiguous): the image fitted to S x S by `fit_to_size`.
  An S x S JPEG (every image of a dataset prepared at that size) is decoded straight into `out`, which
  saves copying it there (the saving is in experiments/results/benchmark/README.md)."""
  size = out.shape[0]
  image = _decode_jpeg_turbo(data, out)
  if image is not None and image.shape == out.shape:
    return
  # A JPEG of fewer pixels than S x S lies decoded in out's first bytes: its shorter side is below S, so
  # fit_to_size resizes it into a new array before out is written. Any other is decoded again, elsewhere.
  out[...] = fit_to_size(image if image is not None else decode_image(data), size)


def fit_to_size(image: np.ndarray, size: int) -> np.ndarray:
  """Section 2: rescale so the shorter side is `size` (`resize`), then crop the central size x size patch.

  Args:
    image: uint8 [H, W, 3].
    size: the side of the square returned.

  Returns:
    uint8 [size, size, 3].
  """
  height, width = image.shape[:2]
  if (height, width) == (size, size):
    return image
  top, left = (height - size) // 2, (width - size) // 2
  if min(height, width) == size:  # already the right scale (e.g. prepared at this size): crop only
    return image[top : top + size, left : left + size]
  scale = size / min(height, width)
  new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
  image = resize(image, new_h, new_w)
  top, left = (new_h - size) // 2, (new_w - size) // 2
  return image[top : top + size, left : left + size]


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Resizes to height x width, aspect ratio not kept, antialiased where it shrinks.

  OpenCV's INTER_AREA (each output pixel the mean of the input area it covers) along a side that shrinks,
  bilinear along one that grows; without OpenCV, Pillow's BILINEAR, whose filter widens with the shrink
  factor, so it antialiases too. Where one side shrinks and the other grows, each side is resized on its
  own, with its own filter.

  Args:
    image: uint8 [H, W, C].
    height: the rows of the result.
    width: the columns of the result.

  Returns:
    uint8 [height, width, C]; `image` itself when it has that size already.
  """
  old_h, old_w = image.shape[:2]
  if (old_h, old_w) == (height, width):
    return image
  if cv2 is None:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
  shrinks, grows = height <= old_h and width <= old_w, height >= old_h and width >= old_w
  if shrinks or grows:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)
  image = resize(image, old_h, width)  # one side at a time
  return resize(image, height, width)


# ---------------------------------------------------------------------------------------------------------
# Prepared datasets


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the trainer needs to know of a prepared dataset."""

  name: str
  path: str
  num_classes: int
  class_names: Tuple[str, ...]
  split_sizes: Dict[str, int]
  image_size: int  # 0 where the stored images have varied sizes


def find_prepared(data_dir: str, name: str) -> str:
  """Finds the newest version of prepared dataset `name` under data_dir.

  Args:
    data_dir: the folder of prepared datasets (`~` is expanded).
    name: the dataset.

  Returns:
    The folder holding its dataset_info.json; DatasetNotPrepared, naming a command that prepares it, where
    there is none.
  """
  data_dir = os.path.expanduser(data_dir)
  if paths.file_in_the_way(data_dir):
    raise DatasetError(
      f"data_dir {data_dir!r} is a file, not a folder. Point --config.dataset.data_dir at "
      f"the folder that `{prepare_command(name, '<folder>')}` wrote."
    )
  candidates = glob.glob(os.path.join(data_dir, name, "**", "dataset_info.json"), recursive=True)
  if not candidates:
    raise DatasetNotPrepared(
      f"No prepared dataset {name!r} in {data_dir!r} (expected "
      f"{os.path.join(data_dir, name)}/<version>/dataset_info.json with array_record "
      f"files). Prepare it with: {prepare_command(name, data_dir)}"
    )

  def version_key(path):
    version = os.path.basename(os.path.dirname(path))
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))

  return os.path.dirname(max(candidates, key=version_key))


def dataset_info(data_dir: str, name: str, *, path: str = None) -> DatasetInfo:
  """Reads what training needs to know of a prepared dataset.

  Args:
    data_dir: the folder of prepared datasets.
    name: the dataset; its newest version in data_dir is read.
    path: one version folder (holding dataset_info.json) to read instead.

  Returns:
    Its DatasetInfo: classes, split sizes, stored image size.
  """
  path = path or find_prepared(data_dir, name)
  with open(os.path.join(path, "dataset_info.json")) as f:
    info = json.load(f)
  with open(os.path.join(path, "features.json")) as f:
    features = json.load(f)
  if info.get("fileFormat", "tfrecord") != "array_record":
    raise DatasetError(
      f"The dataset in {path!r} is stored as {info.get('fileFormat', 'tfrecord')!r}, not "
      f"array_record, which training reads without TensorFlow. Prepare it again with: "
      f"{prepare_command(name, data_dir)}"
    )
  splits = {
    s["name"]: int(sum(int(n) for n in s.get("shardLengths", [])) or s.get("numExamples", 0))
    for s in info.get("splits", [])
  }
  label = _find_feature(features, "label")
  num_classes = int(label.get("classLabel", {}).get("numClasses", 0))
  names_file = os.path.join(path, "label.labels.txt")
  names = ()
  if os.path.exists(names_file):
    with open(names_file) as f:
      names = tuple(line.strip() for line in f if line.strip())
  image = _find_feature(features, "image")
  shape = image.get("image", {}).get("shape", {}).get("dimensions", [])
  size = int(shape[0]) if len(shape) == 3 and int(shape[0]) > 0 and shape[0] == shape[1] else 0
  return DatasetInfo(
    name=name, path=path, num_classes=num_classes, class_names=names, split_sizes=splits, image_size=size
  )


def _find_feature(features: dict, key: str) -> dict:
  found = features.get("featuresDict", {}).get("features", {}).get(key)
  if found is None:
    raise DatasetError(
      f"The prepared dataset has no {key!r} feature (features: "
      f"{sorted(features.get('featuresDict', {}).get('features', {}))}). Expected an image "
      f"classification dataset with 'image' and 'label'."
    )
  return found


class SplitRecords:
  """Random access to the serialized records of one (sub-)split, read straight from its ArrayRecord files.

  The same records, in the same order, as `builder.as_data_source(split)` with RAW_BYTES: TFDS's file
  instructions say which file slices make the split. Reading them here skips two wrappers that cost a
  Python call and a thread-pool hop per record, about as much as the read itself.

  Each run of consecutive records is one range read, in the calling thread. ArrayRecord's read of a list
  of positions fans out to its own thread pool, which is slower for the short lists a batch drawn from
  many files gives (one record per file is the common case for ImageNet's 1024 train files) and spends
  more CPU per record even for long ones, CPU the other decoding workers lose (`experiments/record_reads.py`;
  figures in experiments/results/benchmark/README.md)."""

  def __init__(self, slices: Sequence[Tuple[str, int, int]]):
    """slices: (path, first record, record count) of each file, in split order."""
    self._paths = [path for path, _, _ in slices]
    self._firsts = np.array([first for _, first, _ in slices], np.int64)
    self._ends = np.cumsum([count for _, _, count in slices]).astype(np.int64)  # split-level end of each slice
    self._readers = [None] * len(slices)

  def __len__(self) -> int:
    return int(self._ends[-1]) if len(self._ends) else 0

  def _reader(self, i: int):
    if self._readers[i] is None:
      try:
        # readahead 0: reads are random, a read-ahead buffer would fill with records never asked for.
        self._readers[i] = array_record_module.ArrayRecordReader(
          self._paths[i], "readahead_buffer_size:0", file_reader_buffer_size=32768
        )
      except Exception as e:
        raise DatasetError(f"Cannot read {self._paths[i]!r} ({e}). Prepare the dataset again.") from None
    return self._readers[i]

  def __getitems__(self, keys: Sequence[int]) -> List[bytes]:
    keys = np.asarray(keys, np.int64).reshape(-1)
    if keys.size and (keys.min() < 0 or keys.max() >= len(self)):
      raise IndexError(f"Record keys must lie in [0, {len(self)}); got {keys.min()}..{keys.max()}.")
    files = np.searchsorted(self._ends, keys, side="right")
    positions = keys - np.concatenate([[0], self._ends])[files] + self._firsts[files]
    records: List[bytes] = [b""] * keys.size
    for i in np.unique(files).tolist():
      where = np.flatnonzero(files == i)
      where = where[np.argsort(positions[where], kind="stable")]
      ordered = positions[where]
      # Runs of consecutive records, each read with one range read in this thread.
      starts = np.flatnonzero(np.diff(ordered, prepend=-2) != 1)
      ends = np.append(starts[1:], ordered.size)
      reader = self._reader(i)
      for start, end in zip(starts.tolist(), ends.tolist()):
        first = int(ordered[start])
        try:
          read = reader.read(first, first + end - start)
        except (RuntimeError, IndexError) as e:  # the reader's I/O and format errors; a file cut short
          raise DatasetError(
            f"Cannot read records of {self._paths[i]!r} ({e}). The file is damaged: prepare the dataset again."
          ) from None
        for j, record in zip(where[start:end].tolist(), read):
          records[j] = record
    return records

  def __getitem__(self, key: int) -> bytes:
    return self.__getitems__([key])[0]


def open_split(info: DatasetInfo, split: str) -> SplitRecords:
  """Opens the serialized examples of a split for random access.

  Deserialising with the one small proto parse (`parse_example`) costs a fraction of TFDS's generic feature
  decoding, which would otherwise take longer than decoding the JPEG itself.

  Args:
    info: the prepared dataset (`dataset_info`).
    split: a split, or a slice of one in TFDS's syntax ('train[:300]', 'train[10%:]').

  Returns:
    Its records, in order: `records[k]` or `read_records(records, keys)`.
  """
  import tensorflow_datasets as tfds  # noqa: PLC0415 - the split's file instructions; a second to import

  builder = tfds.builder_from_directory(info.path)
  base = split.split("[")[0]
  if base not in info.split_sizes:
    raise DatasetError(
      f"Dataset {info.name!r} at {info.path!r} has no split {base!r}: it has "
      f"{sorted(info.split_sizes)}. Set --config.dataset.train_split / eval_split."
    )
  try:
    instructions = builder.info.splits[split].file_instructions
  except (ValueError, KeyError, AssertionError) as e:
    raise DatasetError(
      f"Cannot read split {split!r} of {info.name!r} ({' '.join(str(e).split())}). Use a "
      f"split like 'train', 'train[:300]' or 'train[10%:]'."
    ) from None
  # The files lie beside dataset_info.json (TFDS's file names carry the data_dir as it was given).
  slices = [
    (os.path.abspath(os.path.join(info.path, os.path.basename(f.filename))), f.skip, f.take)
    for f in instructions
    if f.take > 0
  ]
  missing = [path for path, _, _ in slices if not os.path.isfile(path)]
  if missing:
    raise DatasetError(
      f"Dataset {info.name!r} at {info.path!r} lacks {len(missing)} of the files of split "
      f"{split!r}, e.g. {missing[0]!r}. Prepare it again (into a new --data_dir, or after "
      f"moving the old one aside)."
    )
  if not slices:
    raise DatasetError(
      f"Split {split!r} of {info.name!r} selects no examples ({base!r} has "
      f"{info.split_sizes[base]}). Use a split like 'train', 'train[:300]' or 'train[10%:]'."
    )
  return SplitRecords(slices)


def read_records(source, keys: Sequence[int]) -> List[bytes]:
  """The records at `keys`, in one `__getitems__` call where the source has it (about half the cost of
  reading them one by one)."""
  keys = [int(k) for k in keys]
  return list(source.__getitems__(keys)) if hasattr(source, "__getitems__") else [source[k] for k in keys]


@functools.cache
def _example_type():
  from tensorflow_datasets.proto import tf_example_pb2  # noqa: PLC0415 - the proto alone, no TensorFlow

  return tf_example_pb2.Example


def parse_example(serialized: bytes, *, file_name: bool = True) -> dict:
  """A serialized tf.train.Example -> {'image': encoded bytes, 'label': int, 'file_name': str}.

  `file_name=False` leaves the name out: the decoding workers' path, a little cheaper per record."""
  features = _example_type().FromString(serialized).features.feature
  example = {"image": features["image"].bytes_list.value[0], "label": int(features["label"].int64_list.value[0])}
  if file_name and "file_name" in features:
    example["file_name"] = features["file_name"].bytes_list.value[0].decode()
  return example
