"""The input pipeline: synthetic determinism, preparing and reading real Imagenette, iterator state,
reading without TensorFlow, and every error path."""

import functools
import glob
import io
import os
import pathlib
import shutil
import subprocess
import sys

from array_record.python import array_record_module
import numpy as np
from PIL import Image, JpegImagePlugin
import pytest

from alexnet_jax import configlib
from alexnet_jax.data import pipeline, prepare, sources, synthetic
from alexnet_jax.training import run_setup

from conftest import REPO


def test_synthetic_is_a_pure_function_of_seed_split_index():
  a, la = synthetic.synthetic_example(0, "train", 5, 64)
  b, lb = synthetic.synthetic_example(0, "train", 5, 64)
  assert a.tobytes() == b.tobytes() and la == lb
  c, _ = synthetic.synthetic_example(1, "train", 5, 64)
  d, _ = synthetic.synthetic_example(0, "val", 5, 64)
  assert a.tobytes() != c.tobytes() and a.tobytes() != d.tobytes()
  assert a.shape == (64, 64, 3) and a.dtype == np.uint8


def test_synthetic_labels_are_balanced_and_colour_alone_is_near_chance():
  """The class must live in the geometry: a nearest-centroid classifier on mean colour is near chance."""

  def features(split, n):
    xs, ys = [], []
    for i in range(n):
      image, label = synthetic.synthetic_example(0, split, i, 32)
      xs.append(image.reshape(-1, 3).mean(0))
      ys.append(label)
    return np.array(xs), np.array(ys)

  x, y = features("train", 1500)
  counts = np.bincount(y, minlength=10)
  assert counts.min() > 100  # every class present, roughly balanced
  xv, yv = features("val", 500)
  centroids = np.stack([x[y == c].mean(0) for c in range(10)])
  predicted = np.argmin(((xv[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
  assert np.mean(predicted == yv) < 0.2  # chance is 0.1


def test_prepared_synthetic_reads_back_identically(synthetic_data_dir):
  info = sources.dataset_info(synthetic_data_dir, "synthetic_shapes")
  assert info.num_classes == 10 and info.split_sizes == {"train": 400, "val": 100} and info.image_size == 72
  assert info.class_names == synthetic.CLASS_NAMES
  batches = list(
    pipeline.eval_batches(
      pipeline.LoaderConfig(
        data_dir=synthetic_data_dir, name="synthetic_shapes", split="val", batch_size=32, num_workers=0
      )
    )
  )
  assert len(batches) == 4 and [int(b["mask"].sum()) for b in batches] == [32, 32, 32, 4]
  labels = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
  assert labels.tolist() == [synthetic.synthetic_example(0, "val", i, 72)[1] for i in range(100)]
  image = batches[0]["image"][3].astype(np.int16)
  expected = synthetic.synthetic_example(0, "val", 3, 72)[0].astype(np.int16)
  assert np.abs(image - expected).mean() < 5  # JPEG q95 keeps all but the pixel noise
  other = synthetic.synthetic_example(0, "val", 4, 72)[0].astype(np.int16)
  assert np.abs(image - other).mean() > 20
  assert np.all(batches[-1]["image"][4:] == 0)  # padding


def test_imagenette_subset_prepares_and_reads_back(imagenette_subset_dir):
  info = sources.dataset_info(imagenette_subset_dir, "imagenette_subset")
  assert info.split_sizes == {"train": 150, "val": 150} and info.image_size == 128
  wnids = info.class_names
  assert len(wnids) == info.num_classes == 10 and list(wnids) == sorted(wnids) and all(w[0] == "n" for w in wnids)
  source = sources.open_split(info, "val")
  for i in range(len(source)):
    example = sources.parse_example(source[i])
    assert sources.parse_example(source[i], file_name=False) == {"image": example["image"], "label": example["label"]}
    path = example["file_name"]
    assert wnids[example["label"]] == os.path.basename(os.path.dirname(path))  # the label is the folder
    image = sources.decode_image(example["image"])
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert np.array_equal(image, _opencv_rgb(example["image"]))  # real photos: OpenCV's pixels exactly


@pytest.mark.parametrize("split", ["train", "val", "train[:37]", "train[10%:25%]", "val[-9:]"])
def test_split_records_are_tfds_own_records_in_order(synthetic_data_dir, split):
  """Records read straight from the array_record files equal those of TFDS's own data source."""
  import tensorflow_datasets as tfds  # noqa: PLC0415 - optional: TFDS's own reader, the reference

  info = sources.dataset_info(synthetic_data_dir, "synthetic_shapes")
  want = tfds.builder_from_directory(info.path).as_data_source(
    split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
  )
  got = sources.open_split(info, split)
  assert len(got) == len(want) > 0
  keys = np.random.default_rng(0).permutation(len(want))[:50].tolist() + [0, len(want) - 1]
  assert sources.read_records(got, keys) == [want[k] for k in keys]


def test_split_records_span_files_in_order(tmp_path):
  """A split made of slices of several files (ImageNet's train split has 1024 of them)."""
  paths = []
  for f, count in enumerate([5, 7, 4]):
    paths.append(str(tmp_path / f"part-{f}.array_record"))
    writer = array_record_module.ArrayRecordWriter(paths[-1], "group_size:1")
    for i in range(count):
      writer.write(f"file{f}-record{i}".encode())
    writer.close()
  records = sources.SplitRecords([(paths[0], 2, 3), (paths[1], 0, 7), (paths[2], 1, 2)])
  want = (
    [f"file0-record{i}" for i in (2, 3, 4)]
    + [f"file1-record{i}" for i in range(7)]
    + [f"file2-record{i}" for i in (1, 2)]
  )
  assert len(records) == 12
  keys = [11, 0, 5, 3, 2, 10, 4]
  assert [r.decode() for r in records.__getitems__(keys)] == [want[k] for k in keys]
  keys = [6, 5, 7, 5, 9, 8, 1, 2, 2]  # runs across a file boundary, in any order, and repeats
  assert [r.decode() for r in records.__getitems__(keys)] == [want[k] for k in keys]
  assert records.__getitems__([]) == []
  assert records[7].decode() == want[7]
  with pytest.raises(IndexError, match=r"\[0, 12\)"):
    records.__getitems__([3, 12])


def test_a_relative_data_dir_reads_from_workers_and_in_process(synthetic_data_dir, monkeypatch):
  parent, folder = os.path.split(synthetic_data_dir)
  monkeypatch.chdir(parent)
  for workers in (0, 1):
    loader = pipeline.train_loader(
      pipeline.LoaderConfig(data_dir=folder, name="synthetic_shapes", split="train", batch_size=8, num_workers=workers)
    )
    try:
      assert next(loader)["image"].shape == (8, 72, 72, 3)
    finally:
      loader.close()


def test_missing_or_damaged_record_files_are_one_clear_error(synthetic_data_dir, tmp_path):
  shutil.copytree(synthetic_data_dir, tmp_path / "copy")
  info = sources.dataset_info(str(tmp_path / "copy"), "synthetic_shapes")
  train_file = glob.glob(os.path.join(info.path, "*train.array_record*"))[0]
  with open(train_file, "r+b") as f:  # damaged: cut short
    f.truncate(os.path.getsize(train_file) // 3)
  with pytest.raises(sources.DatasetError, match=r"(?i)array_record.*prepare the dataset again"):
    sources.read_records(sources.open_split(info, "train"), list(range(0, 400, 7)))
  os.remove(train_file)
  with pytest.raises(sources.DatasetError, match=r"lacks 1 of the files of split 'train'.*Prepare it again"):
    sources.open_split(info, "train")


def _colour_photos(data_dir, count, folder):
  """The first `count` colour photos of the prepared Imagenette subset's val split, written as JPEG files."""
  info = sources.dataset_info(data_dir, "imagenette_subset")
  records = sources.open_split(info, "val")
  photos = []
  for i in range(len(records)):
    data = sources.parse_example(records[i])["image"]
    image = sources.decode_image(data)
    if len(photos) < count and not np.array_equal(image[..., 0], image[..., 2]):
      photos.append(folder / f"{i}.JPEG")
      photos[-1].write_bytes(data)
  return photos


def test_greyscale_photos_read_as_three_equal_channels(tmp_path, imagenette_subset_dir):
  """Single-channel JPEGs (ImageNet has some; the prepared Imagenette stores its greyscale photos as RGB, so
  we write real photos as 1-channel JPEGs) are prepared and read back as 3 equal channels."""
  photos = _colour_photos(imagenette_subset_dir, 4, tmp_path)
  root = tmp_path / "folder"
  for split, (grey, colour) in (("train", photos[:2]), ("val", photos[2:])):
    for cls in ("colour", "grey"):
      os.makedirs(root / split / cls)
    with Image.open(grey) as image:
      image.convert("L").save(root / split / "grey" / grey.name, quality=90)
    os.symlink(colour, root / split / "colour" / colour.name)
  with Image.open(root / "val" / "grey" / photos[2].name) as written:
    assert written.mode == "L"
  prepare.prepare_folder(str(root), str(tmp_path / "data"), name="greys")
  (batch,) = list(
    pipeline.eval_batches(
      pipeline.LoaderConfig(data_dir=str(tmp_path / "data"), name="greys", split="val", batch_size=2, num_workers=0)
    )
  )
  labels = batch["label"].tolist()  # classes sorted: colour=0, grey=1
  grey_image, colour_image = batch["image"][labels.index(1)], batch["image"][labels.index(0)]
  assert grey_image.shape == colour_image.shape == (128, 128, 3)
  assert np.array_equal(grey_image[..., 0], grey_image[..., 1])
  assert np.array_equal(grey_image[..., 1], grey_image[..., 2])
  assert not np.array_equal(colour_image[..., 0], colour_image[..., 2])
  with Image.open(root / "val" / "grey" / photos[2].name) as original:
    assert np.abs(grey_image[..., 0].astype(int) - np.asarray(original).astype(int)).max() <= 2


def test_decode_greyscale_png_and_fit_to_size():
  grey = (np.arange(40 * 60) % 256).astype(np.uint8).reshape(40, 60)
  buffer = io.BytesIO()
  Image.fromarray(grey).save(buffer, format="PNG")
  image = sources.decode_image(buffer.getvalue())
  assert image.shape == (40, 60, 3) and np.array_equal(image[..., 2], grey)
  fitted = sources.fit_to_size(image, 20)  # shorter side 40 -> 20, then the central 20x20 of 20x30
  assert fitted.shape == (20, 20, 3)
  smooth = np.tile(np.linspace(0, 250, 60), (40, 1)).astype(np.uint8)  # a ramp survives resizing
  fitted = sources.fit_to_size(np.stack([smooth] * 3, -1), 20)
  np.testing.assert_allclose(fitted[..., 0], smooth[::2, ::2][:, 5:25], atol=6)


def _jpeg(image, **save_options) -> bytes:
  """An array or a PIL image (e.g. CMYK) as JPEG bytes."""
  buffer = io.BytesIO()
  (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="JPEG", **save_options)
  return buffer.getvalue()


def _photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
  """Smooth colour gradients plus noise: chroma detail that 4:2:0 subsampling and upsampling change."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  base = np.stack([np.sin(6 * x + c) * np.cos(4 * y - c) for c in (0.0, 1.0, 2.0)], -1) * 100 + 128
  return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _opencv_rgb(data: bytes) -> np.ndarray:
  """The reference decoder: OpenCV's imdecode, EXIF orientation ignored, BGR turned to RGB by hand."""
  import cv2  # noqa: PLC0415 - optional dependency: OpenCV

  bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
  return np.ascontiguousarray(bgr[..., ::-1])


def _jpeg_kinds():
  photo = _photo_like(48, 64)
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the decoders must all ignore it
  return {
    "4:2:0": _jpeg(photo, quality=90),
    "4:4:4": _jpeg(photo, quality=95, subsampling=0),
    "progressive": _jpeg(photo, quality=85, progressive=True),
    "greyscale": _jpeg(photo[..., 0], quality=90),
    "exif-rotated": _jpeg(photo, quality=90, exif=exif),
    "cmyk": _jpeg(Image.fromarray(photo).convert("CMYK"), quality=95),
  }


@pytest.mark.parametrize("kind", ["4:2:0", "4:4:4", "progressive", "greyscale", "exif-rotated", "cmyk"])
@pytest.mark.parametrize("decoder", ["simplejpeg", "opencv", "pillow"])
def test_every_jpeg_decoder_gives_the_same_pixels(kind, decoder, monkeypatch):
  pytest.importorskip("simplejpeg")
  data = _jpeg_kinds()[kind]
  if decoder != "simplejpeg":
    monkeypatch.setattr(sources, "simplejpeg", None)
  if decoder == "pillow":
    monkeypatch.setattr(sources, "cv2", None)
  image = sources.decode_image(data)
  expected = _opencv_rgb(data)
  assert image.shape == expected.shape == (48, 64, 3)  # stored orientation, greyscale as 3 channels
  if decoder == "pillow":  # Pillow's libjpeg-turbo may differ in the last bit of a few pixels
    assert np.abs(image.astype(int) - expected).max() <= 2
  else:
    assert np.array_equal(image, expected)


def test_files_simplejpeg_refuses_go_to_the_other_decoders():
  pytest.importorskip("simplejpeg")
  png = io.BytesIO()
  Image.fromarray(_photo_like(20, 30)).save(png, format="PNG")
  assert sources._decode_jpeg_turbo(png.getvalue()) is None
  assert np.array_equal(sources.decode_image(png.getvalue()), _photo_like(20, 30))
  cut_short = _jpeg_kinds()["4:2:0"][:-50]
  assert sources._decode_jpeg_turbo(cut_short) is None  # damaged: the others try, then the one clear error
  with pytest.raises(sources.DatasetError, match="Cannot decode image 'a/b.jpg'.*prepare the dataset again"):
    sources.decode_image(cut_short, path="a/b.jpg")


@pytest.mark.parametrize("with_simplejpeg", [True, False])
def test_decode_fitted_into_writes_only_its_slot(with_simplejpeg, monkeypatch):
  if with_simplejpeg:
    pytest.importorskip("simplejpeg")
  else:
    monkeypatch.setattr(sources, "simplejpeg", None)
  size = 32
  stored = _jpeg(_photo_like(size, size, seed=1), quality=90)  # as prepared at this size: decoded in place
  smaller = _jpeg(_photo_like(24, 30, seed=2), quality=90)  # fits in the slot's bytes, but must be resized
  larger = _jpeg(_photo_like(40, 64, seed=3), quality=90)  # larger than the slot
  png = io.BytesIO()
  Image.fromarray(_photo_like(size, 48, seed=4)).save(png, format="PNG")
  for data in (stored, smaller, larger, png.getvalue()):
    batch = np.full((3, size, size, 3), 7, np.uint8)
    sources.decode_fitted_into(data, batch[1])
    assert (batch[0] == 7).all() and (batch[2] == 7).all()
    assert np.array_equal(batch[1], sources.fit_to_size(_opencv_rgb(data), size))


def test_reading_never_imports_tensorflow(synthetic_data_dir):
  code = f"""
import sys
from alexnet_jax.data import pipeline
cfg = pipeline.LoaderConfig(data_dir={synthetic_data_dir!r}, name='synthetic_shapes', split='train[:64]',
                            batch_size=16, num_workers=0)
batch = next(iter(pipeline.train_loader(cfg)))
assert batch['image'].shape == (16, 72, 72, 3), batch['image'].shape
loaded = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))
print('TF-MODULES', loaded)
assert not loaded, loaded
"""
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "TF-MODULES []" in result.stdout


@pytest.mark.parametrize("num_workers", [0, 2])
def test_iterator_state_restores_the_same_batches(synthetic_data_dir, num_workers):
  config = pipeline.LoaderConfig(
    data_dir=synthetic_data_dir, name="synthetic_shapes", split="train", batch_size=64, seed=3, num_workers=num_workers
  )
  iterator = iter(pipeline.train_loader(config))
  for _ in range(8):  # past the first epoch (400 examples = 6.25 batches)
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(3)]
  resumed = iter(pipeline.train_loader(config))
  resumed.set_state(state)
  for batch in expected:
    got = next(resumed)
    assert np.array_equal(got["image"], batch["image"]) and np.array_equal(got["label"], batch["label"])
  other_seed = next(
    iter(
      pipeline.train_loader(
        pipeline.LoaderConfig(
          data_dir=synthetic_data_dir, name="synthetic_shapes", split="train", batch_size=64, seed=4, num_workers=0
        )
      )
    )
  )
  first = next(
    iter(
      pipeline.train_loader(
        pipeline.LoaderConfig(
          data_dir=synthetic_data_dir, name="synthetic_shapes", split="train", batch_size=64, seed=3, num_workers=0
        )
      )
    )
  )
  assert not np.array_equal(other_seed["label"], first["label"])


def test_eval_batches_are_equal_in_number_across_processes(synthetic_data_dir):
  counts, seen = [], 0
  for p in range(3):
    batches = list(
      pipeline.eval_batches(
        pipeline.LoaderConfig(
          data_dir=synthetic_data_dir,
          name="synthetic_shapes",
          split="val",
          batch_size=16,
          num_workers=0,
          process_index=p,
          process_count=3,
        )
      )
    )
    counts.append(len(batches))
    seen += int(sum(b["mask"].sum() for b in batches))
  assert counts == [3, 3, 3] and seen == 100  # 34/33/33 examples -> 3 batches of 16 each, all counted once


# ------------------------------------------------------------------------------------------------ errors


def test_missing_dataset_names_path_and_command(tmp_path):
  """The command named makes the dataset asked for: a TFDS catalog name from TFDS, any other from a folder."""
  with pytest.raises(
    sources.DatasetNotPrepared,
    match=r"No prepared dataset 'imagenet2012' in .*python -m "
    r"alexnet_jax.data.prepare --source=tfds:imagenet2012 --manual_dir=FOLDER --data_dir=",
  ):
    sources.dataset_info(str(tmp_path), "imagenet2012")
  assert (
    sources.prepare_command("mnist", "D")
    == "python -m alexnet_jax.data.prepare --source=tfds:mnist --download --data_dir=D"
  )
  assert sources.prepare_command("my_photos", "D") == (
    "python -m alexnet_jax.data.prepare --source=folder:PATH --name=my_photos --data_dir=D"
  )
  assert sources.prepare_command("synthetic_shapes", "D").endswith("--source=synthetic_shapes --data_dir=D")


def test_data_dir_that_is_a_file(tmp_path):
  f = tmp_path / "file"
  f.write_text("x")
  with pytest.raises(sources.DatasetError, match="is a file, not a folder"):
    sources.dataset_info(str(f), "synthetic_shapes")
  result = subprocess.run(
    [sys.executable, "-m", "alexnet_jax.data.prepare", f"--data_dir={f}"], capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 2 and result.stderr.count("is a file, not a folder") == 1, result.stderr[-2000:]
  # Training's on-the-fly preparation of the embedded set says the same instead of trying to prepare.
  config = configlib.load_config(f"{REPO / 'configs' / 'alexnet.py'}:smoke")
  assert config.dataset.auto_prepare and config.dataset.name == "synthetic_shapes"
  config.dataset.data_dir = str(f)
  with pytest.raises(sources.DatasetError, match="is a file, not a folder. Point --config.dataset.data_dir"):
    run_setup.ensure_dataset(config)
  assert f.read_text() == "x"


def test_training_prepares_the_embedded_set_without_loading_tensorflow_itself(tmp_path):
  """TFDS's writer imports TensorFlow: the preparation runs in a process of its own, so the training process
  never has TensorFlow's native libraries loaded beside JAX's."""
  code = f"""
import sys
import jax.numpy as jnp
from alexnet_jax import configlib
from alexnet_jax.training import run_setup
jnp.ones(2).block_until_ready()  # JAX's runtime is up, as in training
config = configlib.load_config({str(REPO / "configs" / "alexnet.py")!r} + ":smoke")
config.dataset.data_dir = {str(tmp_path)!r}
info = run_setup.ensure_dataset(config)
print("SPLITS", sorted(info.split_sizes.items()))
print("TF-MODULES", sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")))
"""
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "SPLITS [('train', 6000), ('val', 1000)]" in result.stdout
  assert "TF-MODULES []" in result.stdout, result.stdout[-2000:]


def _smoke_config_with_a_fake_tfds(tmp_path, monkeypatch, tfds_source: str):
  """The smoke config on an empty data_dir, with a `tensorflow_datasets` whose import runs `tfds_source`
  first on sys.path; the preparing process gets the parent's sys.path, so it imports the fake too."""
  fake = tmp_path / "fake" / "tensorflow_datasets"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text(tfds_source)
  monkeypatch.syspath_prepend(str(tmp_path / "fake"))
  config = configlib.load_config(f"{REPO / 'configs' / 'alexnet.py'}:smoke")
  config.dataset.data_dir = str(tmp_path / "data")
  return config


def test_auto_prepare_without_tensorflow_says_how_to_prepare_elsewhere(tmp_path, monkeypatch):
  # A TFDS that cannot be imported, as on a machine without the [prepare] extra.
  config = _smoke_config_with_a_fake_tfds(tmp_path, monkeypatch, "raise ImportError('No module named tensorflow')\n")
  with pytest.raises(sources.DatasetError, match="preparing it needs TensorFlow .No module named tensorflow"):
    run_setup.ensure_dataset(config)
  assert not (tmp_path / "data" / "synthetic_shapes").exists()


def test_auto_prepare_whose_process_dies_says_so_instead_of_waiting(tmp_path, monkeypatch):
  # A TFDS whose import kills the preparing process, as the out-of-memory killer would.
  config = _smoke_config_with_a_fake_tfds(tmp_path, monkeypatch, "import os\nos._exit(9)\n")
  with pytest.raises(sources.DatasetError, match="died before it finished .* prepare it on its own: python -m"):
    run_setup.ensure_dataset(config)
  assert not (tmp_path / "data" / "synthetic_shapes").exists()


def test_auto_prepare_never_replaces_a_copy_it_cannot_use(tmp_path):
  """Training prepares the embedded set only where there is no copy at all: one that is there but unusable
  (here written as tfrecord) is reported with its fix and left as it is."""
  target = pathlib.Path(prepare.prepare_synthetic(str(tmp_path), train_size=20, val_size=10, image_size=32))
  info_file = target / "dataset_info.json"
  info_file.write_text(info_file.read_text().replace('"array_record"', '"tfrecord"'))
  before = {p.name: p.read_bytes() for p in target.iterdir()}
  config = configlib.load_config(f"{REPO / 'configs' / 'alexnet.py'}:smoke")
  config.dataset.data_dir = str(tmp_path)
  assert config.dataset.auto_prepare
  with pytest.raises(sources.DatasetError, match="is stored as 'tfrecord', not array_record"):
    run_setup.ensure_dataset(config)
  assert {p.name: p.read_bytes() for p in target.iterdir()} == before


def test_preparers_racing_for_one_folder_keep_the_first_complete_copy(tmp_path):
  """Processes of a multi-process run prepare the embedded set at once (run_setup.ensure_dataset): a copy that
  lands second is dropped, the first is never replaced under a reader; `prepare` itself replaces."""
  small = dict(train_size=20, val_size=10, image_size=32)
  target = pathlib.Path(prepare.prepare_synthetic(str(tmp_path), **small))
  marker = target / "first_copy"
  marker.write_text("kept")
  again = prepare.prepare_synthetic(str(tmp_path), keep_existing=True, **small)
  assert pathlib.Path(again) == target and marker.read_text() == "kept"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_shapes"]  # no staging copy left behind
  assert sources.dataset_info(str(tmp_path), "synthetic_shapes").split_sizes == {"train": 20, "val": 10}
  prepare.prepare_synthetic(str(tmp_path), **small)  # the preparation command replaces the copy
  assert not marker.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_shapes"]


def test_prepare_refuses_a_negative_worker_count(tmp_path):
  result = subprocess.run(
    [sys.executable, "-m", "alexnet_jax.data.prepare", f"--data_dir={tmp_path / 'data'}", "--workers=-2"],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2 and result.stderr.count("--workers=-2: use 0 (one process per core)") == 1
  assert not (tmp_path / "data").exists()


def make_folder(root, layout):
  for split, classes in layout.items():
    for cls, n in classes.items():
      os.makedirs(root / split / cls, exist_ok=True)
      for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / split / cls / f"{i}.jpg")


@pytest.mark.slow
def test_worker_processes_prepare_the_same_records_in_the_same_order_and_chroma_is_a_choice(tmp_path):
  root = tmp_path / "photos"
  for split in ("train", "val"):
    for n in range(5):
      os.makedirs(root / split / f"class{n % 2}", exist_ok=True)
      image = _photo_like(30 + 7 * n, 50 - 3 * n, seed=n + 10 * (split == "val"))
      if n == 3:
        Image.fromarray(image).save(root / split / f"class{n % 2}" / f"{n}.png")  # re-encoded as JPEG
      else:
        (root / split / f"class{n % 2}" / f"{n}.jpg").write_bytes(_jpeg(image, quality=90))
  records = {}
  for workers in (1, 2):
    data_dir = tmp_path / f"data{workers}"
    prepare.prepare_folder(str(root), str(data_dir), name="photos", image_size=24, workers=workers)
    info = sources.dataset_info(str(data_dir), "photos")
    records[workers] = [
      sources.parse_example(sources.open_split(info, split)[i]) for split in ("train", "val") for i in range(5)
    ]
  assert records[1] == records[2]
  assert len({r["image"] for r in records[1]}) == 10  # every image stored, none twice

  def chroma(data):  # PIL: 0 is 4:4:4, 2 is 4:2:0
    with Image.open(io.BytesIO(data)) as image:
      return JpegImagePlugin.get_sampling(image)

  assert {chroma(r["image"]) for r in records[1]} == {0}  # every image here was resized: 4:4:4 by default
  prepare.prepare_folder(str(root), str(tmp_path / "data420"), name="photos", image_size=24, chroma="4:2:0")
  info = sources.dataset_info(str(tmp_path / "data420"), "photos")
  assert {chroma(sources.parse_example(sources.open_split(info, "val")[i])["image"]) for i in range(5)} == {2}
  with pytest.raises(
    sources.DatasetError, match=r"Unknown chroma subsampling '4:1:1': use one of \['4:4:4', '4:2:0'\]"
  ):
    prepare.prepare_folder(str(root), str(tmp_path / "data411"), name="photos", image_size=24, chroma="4:1:1")
  assert not (tmp_path / "data411").exists()


def test_folder_errors(tmp_path):
  with pytest.raises(sources.DatasetError, match="does not exist"):
    sources.list_image_folder(str(tmp_path / "nope"))
  make_folder(tmp_path / "empty", {"train": {"a": 0}, "val": {"a": 1}})
  with pytest.raises(sources.DatasetError, match=r"No images in .*empty/train"):
    sources.list_image_folder(str(tmp_path / "empty"))
  make_folder(tmp_path / "mismatch", {"train": {"a": 1, "b": 1}, "val": {"a": 1, "c": 1}})
  with pytest.raises(sources.DatasetError, match=r"different classes: only in train: \['b'\], only in val: \['c'\]"):
    sources.list_image_folder(str(tmp_path / "mismatch"))
  make_folder(tmp_path / "nosplit", {"train": {"a": 1}})
  with pytest.raises(sources.DatasetError, match="Missing split folder"):
    sources.list_image_folder(str(tmp_path / "nosplit"))


def test_unreadable_image_fails_preparation_and_keeps_the_existing_dataset(tmp_path):
  root = tmp_path / "folder"
  make_folder(root, {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}})
  data_dir = tmp_path / "data"
  path = prepare.prepare_folder(str(root), str(data_dir), name="mine")
  before = sorted(os.listdir(path))
  (root / "train" / "b" / "broken.jpg").write_bytes(b"this is not a jpeg")
  with pytest.raises(sources.DatasetError, match=r"Cannot decode image .*broken.jpg"):
    prepare.prepare_folder(str(root), str(data_dir), name="mine")
  assert sorted(os.listdir(path)) == before  # the earlier preparation is intact
  assert sources.dataset_info(str(data_dir), "mine").split_sizes == {"train": 4, "val": 2}
  assert sorted(os.listdir(data_dir)) == ["mine"]  # no staging leftovers


def test_catalog_source_never_downloads_unless_asked(tmp_path):
  with pytest.raises(sources.DatasetError, match="Nothing is downloaded unless asked"):
    prepare.prepare_catalog("mnist", str(tmp_path))
  with pytest.raises(sources.DatasetError, match="--manual_dir"):
    prepare.prepare_catalog("imagenet2012", str(tmp_path))


@functools.cache
def _tiny_catalog_builder():
  """A TFDS catalog dataset built from files in manual_dir, as imagenet2012 is from its tars (registered
  with TFDS once per test process, under the name `tiny_manual_photos`)."""
  import tensorflow_datasets as tfds  # noqa: PLC0415 - optional: the catalog builder's base class

  class TinyManualPhotos(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("2.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put <split>/<label>_<n>.jpg files in manual_dir."

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(
          {
            "image": tfds.features.Image(encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=["ant", "bee", "cat"]),
            "file_name": tfds.features.Text(),
          }
        ),
      )

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(dl_manager.manual_dir / split) for split in ("train", "validation")}

    def _generate_examples(self, folder):
      for path in sorted(folder.glob("*.jpg")):
        yield path.name, {"image": str(path), "label": int(path.name[0]), "file_name": path.name}

  return TinyManualPhotos


def _tiny_catalog_files(manual_dir):
  """Photos of varied sizes and aspect ratios: {(split, file name): (label, JPEG bytes)}."""
  files = {}
  for split, shapes in (("train", [(40, 60), (64, 48), (50, 50), (36, 90)]), ("validation", [(45, 70), (80, 40)])):
    os.makedirs(manual_dir / split)
    for n, (height, width) in enumerate(shapes):
      name, data = f"{n % 3}_{n}.jpg", _jpeg(_photo_like(height, width, seed=n), quality=95)
      (manual_dir / split / name).write_bytes(data)
      files[split, name] = (n % 3, data)
  return files


@pytest.mark.slow
def test_catalog_dataset_stored_at_a_size(tmp_path):
  _tiny_catalog_builder()
  files = _tiny_catalog_files(tmp_path / "manual")
  data_dir = tmp_path / "data"
  target = prepare.prepare_catalog(
    "tiny_manual_photos", str(data_dir), manual_dir=str(tmp_path / "manual"), image_size=32, workers=2
  )
  assert target == str(data_dir / "tiny_manual_photos" / prepare.VERSION)
  assert (data_dir / prepare.FULL_SIZE_DIR / "tiny_manual_photos" / "2.0.0" / "dataset_info.json").is_file()
  info = sources.dataset_info(str(data_dir), "tiny_manual_photos")  # what training finds by the name
  assert info.path == target and info.image_size == 32 and info.class_names == ("ant", "bee", "cat")
  assert info.split_sizes == {"train": 4, "validation": 2}
  for split in ("train", "validation"):
    source = sources.open_split(info, split)
    for i in range(len(source)):
      example = sources.parse_example(source[i])
      label, original = files[split, example["file_name"]]
      image = sources.decode_image(example["image"])
      expected = sources.fit_to_size(_opencv_rgb(original), 32)
      assert example["label"] == label and image.shape == (32, 32, 3)
      assert np.abs(image.astype(int) - expected).mean() < 3  # re-encoded as JPEG at quality 95


@pytest.mark.slow
def test_a_sized_catalog_copy_is_refused_where_tfds_own_build_would_shadow_it(tmp_path):
  _tiny_catalog_builder()
  _tiny_catalog_files(tmp_path / "manual")
  data_dir = tmp_path / "data"
  full = prepare.prepare_catalog("tiny_manual_photos", str(data_dir), manual_dir=str(tmp_path / "manual"))
  assert sources.dataset_info(str(data_dir), "tiny_manual_photos").image_size == 0  # as TFDS stores them
  before = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*"))
  with pytest.raises(
    sources.DatasetError,
    match=r"already holds a build of 'tiny_manual_photos' \(version "
    r"2.0.0\).*--name=tiny_manual_photos_sized.*nothing was changed",
  ):
    prepare.prepare_catalog("tiny_manual_photos", str(data_dir), manual_dir=str(tmp_path / "manual"), image_size=32)
  assert sorted(p.relative_to(data_dir) for p in data_dir.rglob("*")) == before and os.path.isdir(full)
  with pytest.raises(sources.DatasetError, match="--name=tiny_32 renames a TFDS dataset only when"):
    prepare.prepare_catalog(
      "tiny_manual_photos", str(data_dir), manual_dir=str(tmp_path / "manual"), stored_name="tiny_32"
    )
  sized = prepare.prepare_catalog(
    "tiny_manual_photos", str(data_dir), manual_dir=str(tmp_path / "manual"), image_size=32, stored_name="tiny_32"
  )
  assert sources.dataset_info(str(data_dir), "tiny_32").path == sized


def test_unknown_source_and_missing_split(synthetic_data_dir):
  with pytest.raises(sources.DatasetError, match="Unknown --source='imagenet'"):
    prepare.parse_source("imagenet")
  info = sources.dataset_info(synthetic_data_dir, "synthetic_shapes")
  with pytest.raises(sources.DatasetError, match=r"has no split 'validation': it has \['train', 'val'\]"):
    sources.open_split(info, "validation")
  with pytest.raises(sources.DatasetError, match=r"Split 'train\[5:3\]' of 'synthetic_shapes' selects no examples"):
    sources.open_split(info, "train[5:3]")
  with pytest.raises(sources.DatasetError, match=r"Cannot read split 'train\[abc\]'.*'train\[:300\]'"):
    sources.open_split(info, "train[abc]")


def test_preparing_the_embedded_set_prints_no_download_message(tmp_path, capfd):
  """TFDS announces 'Downloading and preparing dataset Unknown size' and warns about its staging folder
  while it writes examples we generate: neither reaches the user."""
  prepare.prepare_synthetic(str(tmp_path), train_size=8, val_size=4, image_size=16, seed=0)
  out, err = capfd.readouterr()
  assert "Downloading" not in out + err and "has no dataset_info.json" not in out + err
  assert (tmp_path / "synthetic_shapes" / "1.0.0" / "dataset_info.json").exists()
