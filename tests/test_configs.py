"""configs/alexnet.py: the paper's recipe, variants, key=value overrides and their errors."""

import re
import subprocess
import sys

import pytest

from alexnet_jax import configlib
from alexnet_jax.data import preprocess
from alexnet_jax.model import models
from alexnet_jax.training.run_setup import build_model

from conftest import REPO


cfg = configlib.config_module(str(REPO / "configs" / "alexnet.py"))


def test_default_is_the_papers_recipe():
  c = cfg.get_config()
  assert c.model.preset == "paper" and c.model.use_lrn and c.model.overlapping_pool
  assert c.model.dropout_rate == 0.5 and c.model.num_classes == 1000 and c.model.init_scheme == "paper"
  assert build_model(c).dropout_placement == "fc6_fc7_outputs"  # section 4.2
  assert build_model(c).dropout_scaling == "at_test"  # section 4.2: "multiply their outputs by 0.5"
  assert c.batch_size == 128 and c.num_epochs == 90
  assert (c.optim.momentum, c.optim.weight_decay, c.optim.learning_rate) == (0.9, 5e-4, 0.01)
  assert c.optim.schedule == "plateau" and c.optim.plateau_cut == 0.1
  assert c.dataset.name == "imagenet2012" and c.dataset.image_size == 256
  assert c.augment.crop_size == 227 and c.augment.flip and c.augment.pca_std == 0.1
  assert "ten_crop" in c.augment.final_eval_views
  assert cfg.get_config("imagenet").to_dict() == c.to_dict()


def test_variants_and_aliases():
  smoke = cfg.get_config("smoke")
  assert smoke.dataset.name == "synthetic_shapes" and smoke.dataset.auto_prepare
  ablation = cfg.get_config("imagenette,lrn=False,overlap=False,wd_mode=coupled")
  assert ablation.dataset.name == "imagenette2_128" and ablation.augment.resize_to == 256
  assert ablation.model.use_lrn is False and ablation.model.overlapping_pool is False
  assert ablation.optim.weight_decay_mode == "coupled"
  owt = cfg.get_config("owt,model.dropout_rate=0.3,lr=1")
  assert owt.model.preset == "owt" and owt.augment.crop_size == 224 and owt.model.dropout_rate == 0.3
  assert owt.optim.learning_rate == 1.0  # an int where a float belongs is accepted as a float
  # torchvision's dropout placement and scaling, and the ones the study's committed runs were made with.
  for variant in (owt, cfg.get_config("study"), cfg.get_config("study_imagewoof")):
    assert build_model(variant).dropout_placement == "fc6_fc7_inputs"
    assert build_model(variant).dropout_scaling == "in_training"
  model = build_model(ablation)
  assert model.use_lrn is False and model.lrn_enabled is False and model.num_classes == 10


def test_an_override_wins_over_a_variant_whichever_comes_first():
  """Variants apply first, then the key=value overrides: `lr=0.5,study` is `study,lr=0.5`, not the study's
  own learning rate."""
  before, after = cfg.get_config("lr=0.5,study"), cfg.get_config("study,lr=0.5")
  assert before.optim.learning_rate == after.optim.learning_rate == 0.5
  assert cfg.get_config("study").optim.learning_rate != 0.5
  assert before.to_dict() == after.to_dict()


@pytest.mark.parametrize(
  "key,value",
  [
    ("pool_impl", "fast"),
    ("tower_impl", "vmap"),
    ("conv1_impl", "fft"),
    ("lrn_impl", "fft"),
    ("preset", "vgg"),
    ("dropout_placement", "fc7_fc8_inputs"),
    ("dropout_scaling", "at_training"),
  ],
)
def test_a_misspelt_model_choice_is_one_clear_error(key, value):
  from alexnet_jax.training.run_setup import TrainingError

  config = cfg.get_config(f"smoke,model.{key}={value}")
  with pytest.raises(TrainingError, match=rf"model.{key}='{value}' is not one of \[") as raised:
    build_model(config)
  assert ("'auto'" in str(raised.value)) == (key in ("conv1_impl", "lrn_impl", "pool_impl"))


@pytest.mark.parametrize(
  "arg,message",
  [
    ("smok", "Unknown config variant 'smok'"),
    ("lrm=False", "Unknown config key 'lrm'"),
    ("model.use_lrm=False", "Unknown config key 'model.use_lrm'"),
    ("lrn=maybe", "Config key 'model.use_lrn' is a bool"),
    ("batch=1.5", "Config key 'batch_size' is a int"),
  ],
)
def test_bad_arguments_are_clear_errors(arg, message):
  with pytest.raises(configlib.ConfigError, match=message):
    cfg.get_config(arg)


@pytest.mark.parametrize(
  "flag,message",
  [
    ("--config.model.use_lrm=False", "use_lrm"),
    ("--config.batch_size=lots", "batch_size"),
  ],
)
def test_command_line_overrides_fail_before_anything_runs(tmp_path, flag, message):
  workdir = tmp_path / "work"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "alexnet_jax.main",
      f"--config={REPO}/configs/alexnet.py:smoke",
      f"--workdir={workdir}",
      flag,
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode != 0
  assert message in result.stderr
  assert not workdir.exists()  # nothing ran, nothing was written


def test_auto_picks_each_backends_implementation_and_a_choice_stays():
  resolve_impl = models.resolve_impl
  assert resolve_impl("conv1_impl", "auto", "gpu") == "space_to_depth"
  assert resolve_impl("conv1_impl", "auto", "cpu") == resolve_impl("conv1_impl", "auto", "tpu") == "im2col"
  assert resolve_impl("conv1_impl", "space_to_depth", "cpu") == "space_to_depth"
  assert resolve_impl("conv1_impl", "direct", "gpu") == "direct"
  assert resolve_impl("lrn_impl", "auto", "gpu") == "slices" and resolve_impl("lrn_impl", "auto", "cpu") == "matmul"
  assert resolve_impl("lrn_impl", "slices", "cpu") == "slices"
  assert resolve_impl("pool_impl", "auto", "gpu") == "xla" and resolve_impl("pool_impl", "auto", "cpu") == "masked"
  config = cfg.get_config()
  assert config.model.conv1_impl == config.model.lrn_impl == config.model.pool_impl == "auto"
  fields = ("conv1_impl", "lrn_impl", "pool_impl")
  # Built from the config or directly, the network computes with this CPU's fast forms.
  for model in (build_model(config), models.AlexNet()):
    assert tuple(model.resolved(f) for f in fields) == ("im2col", "matmul", "masked")
  assert models.AlexNet(lrn_impl="slices").resolved("lrn_impl") == "slices"


@pytest.mark.parametrize(
  "key,value,expected",
  [
    ("crop", "centre", "augment.crop='centre' is not one of ['random', 'inception', 'center']"),
    ("eval_views", "ten_crop", "augment.eval_views='ten_crop': it needs 'center'"),
    ("final_eval_views", "center, tencrop", "unknown view(s) ['tencrop']"),
  ],
)
def test_bad_augmentation_choices_are_refused_before_training(key, value, expected):
  config = cfg.get_config("smoke")
  config.augment[key] = value
  with pytest.raises(configlib.ConfigError) as error:
    preprocess.make_preprocessors(config)
  assert expected in str(error.value)
  config.augment[key] = cfg.get_config("smoke").augment[key]
  preprocess.make_preprocessors(config)  # the defaults pass


def test_a_crop_larger_than_the_images_is_refused():
  import dataclasses
  from alexnet_jax.training import run_setup
  from alexnet_jax.data import sources

  info = sources.DatasetInfo(
    name="imagenette2_128", path="/nowhere", num_classes=10, class_names=(), split_sizes={"train": 1}, image_size=128
  )
  config = cfg.get_config("imagenette")
  run_setup.check_crop_fits(config, info)  # 128 px resized to 256 on the device, then 227 crops
  config.augment.resize_to = 0
  with pytest.raises(
    run_setup.TrainingError,
    match=r"crop_size=227 does not fit in the 128x128 images .*"
    r"--config.augment.resize_to=256",
  ):
    run_setup.check_crop_fits(config, info)
  config.augment.crop_size = 128
  run_setup.check_crop_fits(config, info)
  config.dataset.image_size = 0
  with pytest.raises(sources.DatasetError, match="stores images of varied sizes"):
    run_setup.check_crop_fits(config, dataclasses.replace(info, image_size=0))


@pytest.mark.parametrize(
  "key,value,allowed",
  [
    ("optim.learning_rate", -1.0, "> 0"),
    ("optim.learning_rate", 0.0, "> 0"),
    ("optim.momentum", 1.0, "in [0, 1)"),
    ("optim.momentum", -0.1, "in [0, 1)"),
    ("optim.weight_decay", -5e-4, ">= 0"),
    ("model.dropout_rate", 1.0, "in [0, 1)"),
    ("batch_size", 0, ">= 1"),
    ("augment.crop_size", 0, "> 0"),
  ],
)
def test_values_no_run_can_mean_are_refused_before_the_workdir_exists(tmp_path, key, value, allowed):
  from alexnet_jax.training import run_setup, train

  config = cfg.get_config("smoke")
  configlib.set_path(config, key, value)
  with pytest.raises(run_setup.TrainingError, match=re.escape(f"{key}={value!r} must be {allowed}")):
    train.train_and_evaluate(config, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()


def test_a_run_without_steps_is_refused():
  from alexnet_jax.training import run_setup

  config = cfg.get_config("smoke")
  config.num_epochs, config.num_train_steps = 0.0, -1
  with pytest.raises(run_setup.TrainingError, match="num_epochs=0.0 must be > 0"):
    run_setup.check_values(config)
  config.num_train_steps = 10
  run_setup.check_values(config)  # num_train_steps alone gives the run its length
