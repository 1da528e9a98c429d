"""The study's data made from public sources, offline: the prepare command the Imagenette config names (TFDS's
`imagenette/full-size-v2`, downloaded) run against a fake download of a few generated photos in the layout
fast.ai's archive has, with every connection refused; `--squash` and `--jpeg_quality` on a folder source; and the
"not prepared" message naming a command that makes the dataset asked for."""

import io
import shlex
import socket

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from alexnet_jax import configlib
from alexnet_jax.data import prepare, sources
from alexnet_jax.training import run_setup

from conftest import REPO

IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz"
WNIDS = ("n01440764", "n02102040")  # two of the ten classes of TFDS's Imagenette label list


def _ramp(height, width, seed):
  """A photo-like image whose colours run from edge to edge, across and down: squashing keeps all four
  edges in view, cropping the centre of a wide or tall image loses two of them."""
  x = np.linspace(0, 1, width)[None, :, None]
  y = np.linspace(0, 1, height)[:, None, None]
  image = np.concatenate([255 * x + 0 * y, 255 * y + 0 * x, 255 * (x + y) / 2], -1)
  image += np.random.default_rng(seed).normal(0, 6, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


def _jpeg(image, quality=95):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


# (split, class): (height, width) of its one photo: wide and tall, none square.
SHAPES = {("train", 0): (200, 300), ("train", 1): (300, 160), ("val", 0): (180, 320), ("val", 1): (320, 180)}


def _fake_extracted_archive(root):
  """imagenette2.tgz as TFDS's download manager would extract it: imagenette2/{train,val}/<wnid>/*.JPEG.
  Returns {(split, label): the JPEG bytes written}."""
  photos = {}
  for (split, label), (height, width) in SHAPES.items():
    folder = root / "imagenette2" / split / WNIDS[label]
    folder.mkdir(parents=True)
    photos[split, label] = _jpeg(_ramp(height, width, seed=len(photos)))
    (folder / f"{WNIDS[label]}_{split}.JPEG").write_bytes(photos[split, label])
  return photos


@pytest.fixture
def offline(monkeypatch, tmp_path):
  """Every connection and name lookup refused (and recorded); TFDS's download manager hands out the fake
  extracted archive. Yields (the URLs asked for, the connections tried, the photos in the archive)."""
  photos = _fake_extracted_archive(tmp_path / "extracted")
  urls, attempts = [], []

  def refuse(*args, **kwargs):
    attempts.append(args)
    raise OSError("network access in an offline test")

  for name in ("connect", "connect_ex", "sendto"):
    monkeypatch.setattr(socket.socket, name, refuse)
  for name in ("create_connection", "getaddrinfo", "gethostbyname"):
    monkeypatch.setattr(socket, name, refuse)

  def download_and_extract(self, url_or_urls):
    urls.append(url_or_urls)
    return tmp_path / "extracted"

  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", download_and_extract)
  yield urls, attempts, photos


def _imagenette_config(data_dir):
  config = configlib.load_config(f"{REPO / 'configs' / 'alexnet.py'}:imagenette")
  config.dataset.data_dir = str(data_dir)
  return config


def _quantization(data):
  with Image.open(io.BytesIO(data)) as image:
    return image.quantization


def test_the_imagenette_configs_command_prepares_the_study_data_offline(tmp_path, offline):
  """Run as printed by training before the data exists, the command builds TFDS's imagenette/full-size-v2
  from the (fake) download and stores it as imagenette2_128: 128 px photos squashed to 224 first, not
  cropped, JPEG quality 70, fast.ai's split names; training then finds it. Nothing connects anywhere."""
  urls, attempts, photos = offline
  data_dir = tmp_path / "data"
  config = _imagenette_config(data_dir)
  with pytest.raises(sources.DatasetNotPrepared) as error:
    run_setup.ensure_dataset(config)
  command = shlex.split(str(error.value).split("Prepare it with: ", 1)[1])
  assert command[:3] == ["python", "-m", "alexnet_jax.data.prepare"]
  assert "--source=tfds:imagenette/full-size-v2" in command and "--download" in command
  path = prepare.prepare_from_flags(prepare.parse_flags(command[3:] + ["--workers=1"]))

  assert urls == [IMAGENETTE_URL] and attempts == []
  info = run_setup.ensure_dataset(config)  # what training reads, by the config's name
  assert info.path == path == str(data_dir / "imagenette2_128" / prepare.VERSION)
  assert info.image_size == 128 and info.num_classes == 10 and info.class_names[:2] == WNIDS
  assert info.split_sizes == {"train": 2, "val": 2}
  assert config.dataset.eval_split in info.split_sizes and config.dataset.train_split in info.split_sizes
  for split in ("train", "val"):
    records = sources.open_split(info, split)
    for i in range(len(records)):
      example = sources.parse_example(records[i])
      original = sources.decode_image(photos[split, example["label"]])
      stored = sources.decode_image(example["image"]).astype(int)
      squashed = sources.resize(sources.resize(original, 224, 224), 128, 128)  # by hand: squash, then resize
      cropped = sources.fit_to_size(original, 128)  # what --image_size alone would store
      assert stored.shape == (128, 128, 3)
      error = np.abs(stored - squashed).mean()
      assert error < 4  # JPEG quality 70's error
      assert np.abs(stored - cropped).mean() > max(6, 3 * error)  # the edges a centre crop loses are there
      assert _quantization(example["image"]) == _quantization(_jpeg(squashed.astype(np.uint8), quality=70))
      assert _quantization(example["image"]) != _quantization(_jpeg(squashed.astype(np.uint8), quality=95))


def _photo_folder(root):
  """root/{train,val}/<class>/*.jpg: a wide and a tall photo per split, as quality-95 JPEGs."""
  photos = {}
  for (split, label), (height, width) in SHAPES.items():
    folder = root / split / f"class{label}"
    folder.mkdir(parents=True)
    photos[split, label] = _ramp(height, width, seed=len(photos))
    (folder / "photo.jpg").write_bytes(_jpeg(photos[split, label]))
  return photos


def test_a_folder_source_is_squashed_and_stored_at_the_jpeg_quality_asked(tmp_path):
  photos = _photo_folder(tmp_path / "photos")
  sizes = {}
  for quality in (70, 95):
    argv = ["--source=folder:" + str(tmp_path / "photos"), "--squash=224", "--image_size=128"]
    argv += [f"--jpeg_quality={quality}", f"--data_dir={tmp_path / 'data'}", f"--name=q{quality}", "--workers=1"]
    path = prepare.prepare_from_flags(prepare.parse_flags(argv))
    info = sources.dataset_info(str(tmp_path / "data"), f"q{quality}")
    assert info.path == path and info.image_size == 128 and info.split_sizes == {"train": 2, "val": 2}
    sizes[quality] = 0
    for split in ("train", "val"):
      records = sources.open_split(info, split)
      for i in range(len(records)):
        example = sources.parse_example(records[i])
        original = sources.decode_image(_jpeg(photos[split, example["label"]]))
        expected = sources.resize(sources.resize(original, 224, 224), 128, 128)
        stored = sources.decode_image(example["image"])
        assert np.abs(stored.astype(int) - expected).mean() < (4 if quality == 70 else 2)
        assert _quantization(example["image"]) == _quantization(_jpeg(expected, quality=quality))
        sizes[quality] += len(example["image"])
  assert sizes[70] < 0.7 * sizes[95]
  # --squash alone stores the squares at that size.
  argv = ["--source=folder:" + str(tmp_path / "photos"), "--squash=96", f"--data_dir={tmp_path / 'data'}"]
  prepare.prepare_from_flags(prepare.parse_flags(argv + ["--workers=1"]))
  info = sources.dataset_info(str(tmp_path / "data"), "photos")
  assert info.image_size == 96
  assert sources.decode_image(sources.parse_example(sources.open_split(info, "val")[0])["image"]).shape == (96, 96, 3)


def test_resize_antialiases_each_side_as_it_shrinks_or_grows():
  """A stripe pattern one pixel wide averages to grey when shrunk (no aliasing), on either side alone."""
  stripes = np.zeros((40, 60, 3), np.uint8)
  stripes[:, ::2] = 255
  shrunk = sources.resize(stripes, 80, 20)  # width shrinks 3x while height grows 2x
  assert shrunk.shape == (80, 20, 3) and np.abs(shrunk.astype(int) - 128).max() < 50
  assert sources.resize(stripes, 40, 60) is stripes


def test_bad_image_flags_are_one_line_saying_what_to_use(tmp_path):
  _photo_folder(tmp_path / "photos")
  folder = [f"--source=folder:{tmp_path / 'photos'}", f"--data_dir={tmp_path / 'data'}"]
  for argv, message in (
    (folder + ["--jpeg_quality=0"], "--jpeg_quality=0: use a JPEG quality from 1 to 100"),
    (folder + ["--squash=-1"], "--squash=-1: use a side in pixels, or 0 for none"),
    (["--source=synthetic_shapes", "--squash=64"], "--squash applies to folder and tfds sources"),
    (["--source=tfds:mnist", "--download", "--jpeg_quality=70"], "--jpeg_quality=70 sets the quality of images"),
  ):
    with pytest.raises(sources.DatasetError, match=message) as error:
      prepare.prepare_from_flags(prepare.parse_flags(argv))
    assert "\n" not in str(error.value)
  assert not (tmp_path / "data").exists()


def test_the_not_prepared_message_names_a_command_for_the_dataset_asked_for(tmp_path):
  """The config's prepare command only where it makes the dataset asked for, else one for that name."""
  config = configlib.load_config(f"{REPO / 'configs' / 'alexnet.py'}:smoke")
  data_dir = str(tmp_path / "data")
  config.dataset.data_dir = data_dir
  expected = {
    "imagenet2012": f"--source=tfds:imagenet2012 --manual_dir=FOLDER --data_dir={data_dir}",
    "mnist": f"--source=tfds:mnist --download --data_dir={data_dir}",
    "my_photos": f"--source=folder:PATH --name=my_photos --data_dir={data_dir}",
  }
  for name, command in expected.items():
    config.dataset.name = name
    with pytest.raises(sources.DatasetNotPrepared) as error:
      run_setup.ensure_dataset(config)
    message = str(error.value)
    assert message.endswith(f"Prepare it with: python -m alexnet_jax.data.prepare {command}"), message
    assert "synthetic_shapes" not in message and "\n" not in message
  imagenette = _imagenette_config(data_dir)
  for name, matches in (("imagenette2_128", True), ("imagewoof2_128", False)):
    imagenette.dataset.name = name
    command = prepare.command_for(name, data_dir, imagenette.dataset.prepare_args)
    assert (
      command == f"python -m alexnet_jax.data.prepare {imagenette.dataset.prepare_args} --data_dir={data_dir}"
    ) is (matches)
  # The name a command stores: --name, else the source's own.
  for args, name in (
    ("--source=folder:~/imagewoof2-320", "imagewoof2_320"),
    ("--source=tfds:imagenette/full-size-v2 --download --image_size=128", "imagenette_full_size_v2"),
    ("--source=tfds:imagenette/full-size-v2 --download", "imagenette/full-size-v2"),
    ("--source=tfds:imagenet2012 --image_size=256 --name=inet", "inet"),
    ("", "synthetic_shapes"),
  ):
    assert prepare.stored_name(prepare.parse_flags(shlex.split(args))) == name
  assert prepare.command_for("x", "D", "--no_such_flag") == sources.prepare_command("x", "D")
