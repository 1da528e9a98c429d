"""The trainer on one shared trained run (`trained_workdir`): exact resume after kill -9, corrupt and
non-finite checkpoints, eval-only, the error paths, and using the trained network (inference, predict,
inspect). Command-line runs are real `python -m alexnet_jax.main` subprocesses on 2 virtual CPU devices,
so the pmapped path is the one under test; some tests call train_and_evaluate in this process, as a user's
own program would. The helpers here serve test_train_runs.py and test_multiprocess.py too."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import REPO

CONFIG = f"{REPO}/configs/alexnet.py"


def env():
  e = dict(os.environ)
  e["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  e["JAX_PLATFORMS"] = "cpu"
  return e


def tiny_flags(data_dir, **overrides):
  """The smoke variant on the test run's small synthetic dataset: a 1/8-width model, 16-image batches."""
  flags = {
    "dataset.data_dir": data_dir,
    "dataset.num_workers": 0,
    "dataset.auto_prepare": False,
    "model.width_multiplier": 0.125,
    "batch_size": 16,
    "optim.schedule": "constant",
    "num_train_steps": 24,
    "checkpoint_every_steps": 12,
    "log_every_steps": 4,
    "eval_every_epochs": 100.0,
    "augment.final_eval_views": "center",
    "progress_bar": False,
  }
  flags.update(overrides)
  return [f"--config.{k}={v}" for k, v in flags.items()]


def main_command(workdir, flags, variant="smoke"):
  return [sys.executable, "-m", "alexnet_jax.main", f"--config={CONFIG}:{variant}", f"--workdir={workdir}"] + flags


def run_main(workdir, flags, variant="smoke", timeout=600, **extra_env):
  return subprocess.run(
    main_command(workdir, flags, variant), capture_output=True, text=True, timeout=timeout, env={**env(), **extra_env}
  )


def failure_text(stderr: str, keep: int = 3000) -> str:
  """A failed command's stderr for an assertion message: its tail and, for a crash, the lines around
  faulthandler's "Fatal Python error", where a C or C++ library's own message (glibc, an XLA check) comes
  before the thread dump that fills the tail."""
  crash = stderr.find("Fatal Python error")
  if crash < 0 or crash >= len(stderr) - keep:
    return stderr[-keep:]
  return stderr[max(crash - keep, 0) : crash + keep] + "\n[...]\n" + stderr[-keep:]


def records(workdir, kinds=("train", "eval")):
  with open(pathlib.Path(workdir) / "metrics.jsonl") as f:
    return [r for r in map(json.loads, f) if r["kind"] in kinds]


def final_params(workdir, step):
  restored = ocp.StandardCheckpointer().restore(pathlib.Path(workdir) / "checkpoints" / str(step) / "state")
  return restored["params"]


def assert_trees_equal(a, b):
  import jax

  leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
  for (path, x), (_, y) in zip(leaves_a, leaves_b):
    assert np.array_equal(np.asarray(x), np.asarray(y)), f"{path} differs"


def wait_for(predicate, timeout, what):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    time.sleep(0.02)
  raise AssertionError(f"timed out waiting for {what}")


def in_process_config(data_dir, workers=0):
  """The smoke variant at 1/8 width, 16-image batches on the test run's synthetic dataset, for train_and_evaluate
  called in this process (as tiny_flags is for the command line)."""
  from test_configs import cfg

  config = cfg.get_config("smoke")
  config.dataset.data_dir, config.dataset.num_workers, config.dataset.auto_prepare = data_dir, workers, False
  config.model.width_multiplier, config.batch_size, config.progress_bar = 0.125, 16, False
  return config


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory, synthetic_data_dir):
  """One finished 24-step run (checkpoints at 12 and 24) that the tests below copy and then damage; its
  compiled programs are kept in ../xla_cache (--compilation_cache_dir) for the resume test to load."""
  workdir = tmp_path_factory.mktemp("trained") / "work"
  cache = workdir.parent / "xla_cache"
  result = run_main(workdir, tiny_flags(synthetic_data_dir) + [f"--compilation_cache_dir={cache}"])
  assert result.returncode == 0, failure_text(result.stderr)
  return workdir


def copy_of(workdir, tmp_path):
  import shutil

  return pathlib.Path(shutil.copytree(workdir, tmp_path / "work"))


@pytest.mark.slow
def test_exact_resume_after_kill_minus_nine(tmp_path, synthetic_data_dir, trained_workdir):
  straight, killed = trained_workdir, tmp_path / "killed"

  # Same config, but asked for many more steps so it is still running when killed right after step 12's
  # checkpoint is complete (orbax renames the finished checkpoint into place).
  process = subprocess.Popen(
    main_command(killed, tiny_flags(synthetic_data_dir, num_train_steps=100000)),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
    env=env(),
  )
  try:
    wait_for(lambda: (killed / "checkpoints" / "12" / "state").is_dir(), 300, "the checkpoint at step 12")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
  finally:
    process.kill()
  assert process.returncode == -signal.SIGKILL
  steps_on_disk = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
  assert steps_on_disk[0] == 12 and steps_on_disk[-1] < 24

  # The resume also shares the compilation cache the straight run wrote: its pmapped steps (JAX names
  # them 'jit__fun') load from there instead of compiling, and train the same bits.
  cache = straight.parent / "xla_cache"
  with open(killed / "checkpoints" / "12" / "extra" / "metadata") as f:
    first_segment_s = json.load(f)["wall_time_s"]  # the killed run's wall time up to its checkpoint
  started = time.time()
  result = run_main(killed, tiny_flags(synthetic_data_dir) + [f"--compilation_cache_dir={cache}"], JAX_LOG_COMPILES="1")
  second_segment_s = time.time() - started
  assert result.returncode == 0, failure_text(result.stderr)
  assert "Persistent compilation cache hit for 'jit__fun'" in result.stderr
  assert_trees_equal(final_params(straight, 24), final_params(killed, 24))
  assert records(killed) == records(straight)  # train and eval records, bit for bit, including after step 12
  # The summary's wall time is the run's, both segments: the first up to its checkpoint, then the resume.
  with open(killed / "summary.json") as f:
    wall_time_s = json.load(f)["wall_time_s"]
  assert first_segment_s > 0 and first_segment_s < wall_time_s <= first_segment_s + second_segment_s


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, synthetic_data_dir, trained_workdir):
  workdir = copy_of(trained_workdir, tmp_path)
  for path in (workdir / "checkpoints" / "24" / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"\0garbage")
  result = run_main(workdir, tiny_flags(synthetic_data_dir, num_train_steps=28))
  assert result.returncode == 0, failure_text(result.stderr)
  assert "Checkpoint at step 24" in result.stderr and "cannot be read" in result.stderr
  assert "Resumed from the checkpoint at step 12" in result.stderr
  assert list((workdir / "corrupt_checkpoints").iterdir())  # moved aside, not deleted
  assert json.loads((workdir / "summary.json").read_text())["step"] == 28


@pytest.mark.slow
def test_non_finite_loss_stops_with_the_last_good_checkpoint_intact(tmp_path, synthetic_data_dir, trained_workdir):
  workdir = copy_of(trained_workdir, tmp_path)
  before, summary_before = final_params(workdir, 24), (workdir / "summary.json").read_bytes()
  result = run_main(workdir, tiny_flags(synthetic_data_dir, num_train_steps=36, **{"optim.learning_rate": 1e6}))
  assert result.returncode != 0
  import re

  bad_step = re.search(r"Non-finite training loss at step (\d+) ", result.stderr)
  assert bad_step and 25 <= int(bad_step.group(1)) <= 28, result.stderr[-2000:]  # the first log after the resume
  assert "the last good checkpoint is step 24" in result.stderr
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [12, 24]
  assert_trees_equal(before, final_params(workdir, 24))
  # The divergence is written down as a result (a sweep reports it as a run that did not train); the
  # 24-step run's summary.json stays as it was.
  diverged = json.loads((workdir / "diverged.json").read_text())
  assert diverged["diverged"].startswith(f"Non-finite training loss at step {bad_step.group(1)} ")
  assert diverged["final"] == {} and 25 <= diverged["step"] <= 28 and diverged["total_steps"] == 36
  assert (workdir / "summary.json").read_bytes() == summary_before


@pytest.mark.slow
def test_eval_only_from_a_checkpoint(tmp_path, synthetic_data_dir, trained_workdir):
  workdir = copy_of(trained_workdir, tmp_path)
  metrics_before = (workdir / "metrics.jsonl").read_bytes()
  result = run_main(workdir, tiny_flags(synthetic_data_dir, eval_only=True))
  assert result.returncode == 0, failure_text(result.stderr)
  evaluation = json.loads((workdir / "eval.json").read_text())
  assert evaluation["step"] == 24 and evaluation["final"]["eval/count"] == 100
  trained = json.loads((workdir / "summary.json").read_text())["final"]
  assert evaluation["final"]["eval/top1_error"] == pytest.approx(trained["eval/top1_error"])  # same params
  assert (workdir / "metrics.jsonl").read_bytes() == metrics_before
  empty = run_main(tmp_path / "empty", tiny_flags(synthetic_data_dir, eval_only=True))
  assert empty.returncode != 0 and "eval_only needs a checkpoint" in empty.stderr


def snapshot(folder):
  return {p: p.read_bytes() for p in pathlib.Path(folder).rglob("*") if p.is_file()}


@pytest.mark.slow
def test_error_paths_leave_existing_work_untouched(tmp_path, synthetic_data_dir, trained_workdir):
  workdir = copy_of(trained_workdir, tmp_path)
  before = snapshot(workdir)

  missing = run_main(workdir, tiny_flags(str(tmp_path / "no_data")))
  assert missing.returncode != 0
  assert "No prepared dataset 'synthetic_shapes'" in missing.stderr
  assert "python -m alexnet_jax.data.prepare" in missing.stderr

  other_model = run_main(workdir, tiny_flags(synthetic_data_dir, **{"model.width_multiplier": 0.25}))
  assert other_model.returncode != 0
  assert "cannot be restored into this config's train state" in other_model.stderr

  misspelt_view = run_main(workdir, tiny_flags(synthetic_data_dir, **{"augment.final_eval_views": "center,tencrop"}))
  assert misspelt_view.returncode != 0 and "Traceback" not in misspelt_view.stderr
  assert "augment.final_eval_views='center,tencrop': unknown view(s) ['tencrop']" in misspelt_view.stderr

  assert snapshot(workdir) == before

  fresh = tmp_path / "fresh"
  no_mean = run_main(fresh, tiny_flags(synthetic_data_dir, **{"augment.mean_image": tmp_path / "none.npy"}))
  assert no_mean.returncode != 0 and "python -m alexnet_jax.data.stats --data_dir=" in no_mean.stderr
  no_split = run_main(fresh, tiny_flags(synthetic_data_dir, **{"dataset.eval_split": "validation"}))
  assert no_split.returncode != 0 and "has no split 'validation': it has ['train', 'val']" in no_split.stderr
  too_large = run_main(fresh, tiny_flags(synthetic_data_dir, **{"augment.crop_size": 80}))  # stored at 72 px
  assert too_large.returncode != 0 and "augment.crop_size=80 does not fit in the 72x72 images" in too_large.stderr
  tiny_split = run_main(fresh, tiny_flags(synthetic_data_dir, **{"dataset.train_split": "train[:10]"}))
  assert tiny_split.returncode != 0 and "has 10 examples, fewer than one batch of 16" in tiny_split.stderr
  assert not any(fresh.iterdir())  # no config.json, checkpoints/ or tensorboard/ for runs that never started

  a_file = tmp_path / "file"
  a_file.write_text("keep me")
  unwritable = run_main(a_file / "sub", tiny_flags(synthetic_data_dir))
  assert unwritable.returncode != 0 and "Cannot write to --workdir" in unwritable.stderr
  is_file = run_main(a_file, tiny_flags(synthetic_data_dir))
  assert is_file.returncode != 0 and "is a file" in is_file.stderr
  assert a_file.read_text() == "keep me"


def _running(pid: int) -> bool:
  """Whether process `pid` exists and has not exited (a zombie awaiting its parent has)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


def test_a_run_that_fails_stops_its_decoding_workers(tmp_path, synthetic_data_dir, monkeypatch):
  """train_and_evaluate called from a user's own process (a notebook, a sweep driver): an error in the
  loop must not leave the decoding worker processes and their shared memory behind."""
  from alexnet_jax.training import steps, train
  from alexnet_jax.data import pipeline

  worker_pids = []

  def recording_loader(config):
    loader = real_train_loader(config)
    worker_pids.extend(loader.worker_pids())
    return loader

  def failing_step(*args, **kwargs):
    def step(*a, **k):
      raise RuntimeError("injected failure in the train step")

    return step

  real_train_loader = pipeline.train_loader
  monkeypatch.setattr(pipeline, "train_loader", recording_loader)
  monkeypatch.setattr(steps, "pmap_train_step", failing_step)
  config = in_process_config(synthetic_data_dir, workers=2)
  with pytest.raises(RuntimeError, match="injected failure") as failure:
    train.train_and_evaluate(config, str(tmp_path / "work"))
  assert len(worker_pids) == 2  # the loader did start its workers
  # `failure` holds the traceback, and with it the loop's frame and its loader, as an interactive interpreter
  # holds sys.last_traceback: the workers must stop anyway, not only when the loader is garbage-collected.
  wait_for(lambda: not any(_running(p) for p in worker_pids), 10, "the decoding workers to exit")
  assert failure.traceback  # kept alive until here


def test_the_loop_runs_at_most_two_steps_ahead_of_the_devices(tmp_path, synthetic_data_dir, monkeypatch):
  """Each call of the train step counts the earlier calls whose outputs the loop has not yet waited for:
  never more than MAX_STEPS_IN_FLIGHT, so a stop request waits for two steps' compute, not a queue of
  hundreds, and the progress bar counts finished steps."""
  from alexnet_jax.training import loop, steps, train

  waited, outstanding_at_call = set(), []

  class RecordingInFlight(loop.InFlight):
    @staticmethod
    def wait(outputs):
      waited.add(id(outputs))
      jax_block(outputs)

  def counting_step(*args, **kwargs):
    real = real_pmap_train_step(*args, **kwargs)
    returned = []

    def step(*a, **k):
      outstanding_at_call.append(sum(id(m) not in waited for m in returned))
      state, metrics = real(*a, **k)
      returned.append(metrics)
      return state, metrics

    return step

  import jax

  jax_block = jax.block_until_ready
  real_pmap_train_step = steps.pmap_train_step
  monkeypatch.setattr(loop, "InFlight", RecordingInFlight)
  monkeypatch.setattr(steps, "pmap_train_step", counting_step)
  config = in_process_config(synthetic_data_dir, workers=0)
  config.num_train_steps, config.log_every_steps, config.eval_every_epochs = 12, 1000, 100.0
  config.augment.final_eval_views = "center"
  train.train_and_evaluate(config, str(tmp_path / "work"))
  assert len(outstanding_at_call) == 12
  assert max(outstanding_at_call) == loop.MAX_STEPS_IN_FLIGHT  # reached, and never passed


def test_evaluation_leaves_at_most_two_batches_computing_and_sums_every_batch(monkeypatch):
  """When a view's step is called for batch k, the loop has waited for all but MAX_STEPS_IN_FLIGHT of the
  earlier batches: an unbounded queue of eval programs deadlocked XLA's cross-device sum on 2-core CI. The
  sums still cover every example, checked against NumPy over the batches."""
  import jax
  import jax.numpy as jnp

  from alexnet_jax.training import loop, steps

  waits, outstanding_at_call = [], []

  class RecordingInFlight(loop.InFlight):
    @staticmethod
    def wait(outputs):
      waits.append(outputs)
      jax.block_until_ready(outputs)

  def fake_eval(state, batch, *, axis_name):
    """Sums of the labels as the eval step's four metrics, so the totals are known exactly."""
    del state
    mask, label = batch["mask"], batch["label"].astype(jnp.float32)
    sums = {"loss_sum": jnp.sum(label * mask), "top1": jnp.sum(mask * (label < 2)), "top5": jnp.sum(mask)}
    return jax.lax.psum({**sums, "count": jnp.sum(mask)}, axis_name)

  pmapped = steps.pmap_eval_step(fake_eval)

  def counted_eval(state, batch):
    outstanding_at_call.append(len(outstanding_at_call) - len(waits))
    return pmapped(state, batch)

  rng = np.random.default_rng(0)
  batches = [
    {"image": np.zeros((16, 1), np.uint8), "label": rng.integers(0, 4, 16).astype(np.int32), "mask": m}
    for m in [np.ones(16, np.float32)] * 5 + [np.r_[np.ones(9), np.zeros(7)].astype(np.float32)]
  ]
  monkeypatch.setattr(loop, "InFlight", RecordingInFlight)
  results = loop.evaluate({"center": counted_eval}, 0.0, iter(batches), steps.local_mesh())
  assert len(outstanding_at_call) == 6 and max(outstanding_at_call) == loop.MAX_STEPS_IN_FLIGHT
  labels = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
  assert results["eval/count"] == labels.size == 89
  assert results["eval/loss"] == pytest.approx(labels.sum() / 89, rel=1e-6)
  assert results["eval/top1_error"] == pytest.approx(1 - np.sum(labels < 2) / 89, rel=1e-6)


def test_the_study_reads_conv1_from_the_newest_checkpoint(trained_workdir):
  from experiments.study import report_files

  kernel = report_files.final_conv1_kernels(str(trained_workdir))
  assert kernel.shape[:3] == (11, 11, 3)
  np.testing.assert_array_equal(kernel, np.asarray(final_params(trained_workdir, 24)["conv1"]["kernel"]))
  assert not np.array_equal(kernel, np.asarray(final_params(trained_workdir, 12)["conv1"]["kernel"]))


def _strict_json(text):
  def refuse(constant):
    raise ValueError(f"not standard JSON: {constant}")

  return json.loads(text, parse_constant=refuse)


def test_a_finished_run_run_again_says_so_and_writes_nothing(tmp_path, synthetic_data_dir, trained_workdir):
  """Named `--workdir=~/work`, as a shell passes it on (no ~ expansion after `=`): the answer names the
  folder in the home directory."""
  workdir = copy_of(trained_workdir, tmp_path)
  before = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()}
  result = run_main("~/work", tiny_flags(synthetic_data_dir), HOME=str(tmp_path))
  assert result.returncode == 0, failure_text(result.stderr)
  assert "Already finished at step 24" in result.stdout and "nothing was run or written" in result.stdout
  assert f"Summary in {workdir / 'summary.json'};" in result.stdout
  assert {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()} == before
  summary = _strict_json((workdir / "summary.json").read_text())  # no Infinity / NaN anywhere
  assert "plateau" not in summary  # a constant schedule has no plateau state to report


def test_the_final_evaluation_decodes_the_split_once_for_all_views(tmp_path, synthetic_data_dir, monkeypatch):
  """Centre and 10-crop views come from one pass over the decoded split (it was decoded once per view)."""
  from alexnet_jax.training import train
  from alexnet_jax.data import pipeline

  passes = []
  real_eval_batches = pipeline.eval_batches

  def counting(config):
    passes.append(config.split)
    return real_eval_batches(config)

  monkeypatch.setattr(pipeline, "eval_batches", counting)
  config = in_process_config(synthetic_data_dir, workers=0)
  config.num_train_steps, config.eval_every_epochs = 4, 100.0
  summary = train.train_and_evaluate(config, str(tmp_path / "work"))
  assert passes == ["val"]
  assert summary["final"]["eval/count"] == summary["final"]["eval_ten_crop/count"] == 100


def test_the_jit_sharded_step_trains_the_parameters_pmap_trains(tmp_path, synthetic_data_dir, monkeypatch):
  """config.step_impl: the trainer's jit-over-a-mesh step reaches pmap's parameters (8 devices, 4 steps).
  Dropout and random augmentation are off: the two draw their randomness per device and per global batch."""
  from alexnet_jax.training import steps, train

  built = []  # which step forms the trainer built
  for name in ("pmap_train_step", "sharded_train_step"):
    real = getattr(steps, name)
    monkeypatch.setattr(steps, name, lambda *a, _real=real, _name=name, **k: built.append(_name) or _real(*a, **k))
  params = {}
  for impl in ("pmap", "jit_sharded"):
    config = in_process_config(synthetic_data_dir)
    config.num_train_steps, config.eval_every_epochs, config.step_impl = 4, 100.0, impl
    config.model.dropout_rate, config.augment.crop, config.augment.flip, config.augment.pca_std = (
      0.0,
      "center",
      False,
      0.0,
    )
    summary = train.train_and_evaluate(config, str(tmp_path / impl))
    assert summary["step"] == 4 and summary["config"]["step_impl"] == impl
    params[impl] = final_params(tmp_path / impl, 4)
  assert built == ["pmap_train_step", "sharded_train_step"]
  import jax

  pairs = zip(jax.tree_util.tree_leaves_with_path(params["pmap"]), jax.tree_util.tree_leaves(params["jit_sharded"]))
  for (path, a), b in pairs:
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))


def test_an_unknown_step_impl_is_refused_before_anything_is_written(tmp_path, synthetic_data_dir):
  from alexnet_jax.training import run_setup, train

  config = in_process_config(synthetic_data_dir)
  config.step_impl = "vmap"
  with pytest.raises(run_setup.TrainingError, match=r"Unknown step impl 'vmap'.*--config.step_impl"):
    train.train_and_evaluate(config, str(tmp_path / "work"))
  assert not (tmp_path / "work" / "checkpoints").exists()


def _val_batch(data_dir, n=16):
  from alexnet_jax.data import pipeline

  config = pipeline.LoaderConfig(
    data_dir=data_dir, name="synthetic_shapes", split="val", batch_size=n, image_size=72, num_workers=0, shuffle=False
  )
  return next(iter(pipeline.eval_batches(config)))


def test_inference_scores_images_as_the_evaluation_step_does(trained_workdir, synthetic_data_dir):
  """inference.load of the trained run: its top-1 on a validation batch equals the eval step's, for the
  centre view and for the 10 crops."""
  import jax
  from alexnet_jax.data import preprocess
  from alexnet_jax.tools import inference
  from alexnet_jax.training import steps

  net = inference.load(str(trained_workdir))
  assert net.step == 24 and net.image_size == 72 and len(net.class_names) == 10
  batch = _val_batch(synthetic_data_dir)
  state = steps.TrainState.create(apply_fn=net.model.apply, params=net.params, tx=__import__("optax").sgd(0.0))
  for views in ("center", "ten_crop"):
    sums = jax.jit(lambda s, b: steps.eval_step(s, b, preprocess=preprocess.eval_preprocessor(net.config, views)))(
      state, batch
    )
    logits = net.logits(batch["image"], views=views)
    assert logits.shape == (16, 10)
    assert int((logits.argmax(1) == batch["label"]).sum()) == int(sums["top1"])


def test_fc7_features_are_the_activations_recomputed_from_the_parameters(trained_workdir, synthetic_data_dir):
  """fc7 = relu(0.5 relu(pool5 W6 + b6) W7 + b7) by hand in float64 from the checkpoint's parameters: at
  test time fc6's dropped outputs are halved (section 4.2)."""
  from alexnet_jax.data import preprocess
  from alexnet_jax.tools import inference

  net = inference.load(str(trained_workdir))
  images = _val_batch(synthetic_data_dir, n=3)["image"]
  x = np.asarray(preprocess.eval_preprocessor(net.config, "center")({"image": images})["image"])
  _, state = net.model.apply({"params": net.params}, x, train=False, mutable=["intermediates"])
  pool5 = np.asarray(state["intermediates"]["pool5"][0], np.float64).reshape(3, -1)
  p = {k: {n: np.asarray(v, np.float64) for n, v in layer.items()} for k, layer in net.params.items()}
  fc6 = np.maximum(pool5 @ p["fc6"]["kernel"] + p["fc6"]["bias"], 0)
  assert (net.model.dropout_placement, net.model.dropout_scaling, net.model.dropout_rate) == (
    "fc6_fc7_outputs",
    "at_test",
    0.5,
  )
  fc7 = np.maximum((0.5 * fc6) @ p["fc7"]["kernel"] + p["fc7"]["bias"], 0)
  np.testing.assert_allclose(net.features(images, "fc7"), fc7, rtol=1e-4, atol=1e-5)
  assert net.features(images, "conv1").shape[1:3] == (15, 15)  # 67 px crops: (67 - 11) / 4 + 1
  with pytest.raises(inference.InferenceError, match=r"Unknown layer 'fc8': use one of \['conv1'"):
    net.features(images, "fc8")
  with pytest.raises(inference.InferenceError, match=r"Expected uint8 images \[B, 72, 72, 3\]"):
    net.logits(np.zeros((1, 64, 64, 3), np.uint8))
  assert net.fit(np.zeros((90, 120, 3), np.uint8)).shape == (72, 72, 3)


def test_inference_refuses_a_workdir_without_a_checkpoint(tmp_path):
  from alexnet_jax.tools import inference

  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(inference.InferenceError, match="holds no checkpoint"):
    inference.load(str(tmp_path))
  with pytest.raises(inference.InferenceError, match="has no config.json"):
    inference.load(str(tmp_path / "nothing"))


def test_predict_prints_the_classes_the_network_scores_highest(trained_workdir, synthetic_data_dir, tmp_path):
  """The command line on two PNG files of validation images: the top class of each is the argmax of
  inference's logits; an unreadable file is one line naming it."""
  from PIL import Image
  from alexnet_jax.tools import inference

  batch = _val_batch(synthetic_data_dir, n=2)
  for i, image in enumerate(batch["image"]):
    Image.fromarray(image).save(tmp_path / f"val{i}.png")
  net = inference.load(str(trained_workdir))
  expected = [net.class_names[i] for i in net.logits(batch["image"]).argmax(1)]
  command = [
    sys.executable,
    "-m",
    "alexnet_jax.tools.predict",
    f"--workdir={trained_workdir}",
    "--json",
    "--top=3",
    str(tmp_path),
  ]
  result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env())
  assert result.returncode == 0, result.stderr[-2000:]
  images = json.loads(result.stdout)["images"]
  assert [images[str(tmp_path / f"val{i}.png")][0]["class"] for i in range(2)] == expected
  assert all(len(v) == 3 and sum(c["probability"] for c in v) <= 1.0 + 1e-6 for v in images.values())
  (tmp_path / "broken.jpg").write_bytes(b"not an image")
  broken = subprocess.run(
    command[:-2] + [str(tmp_path / "broken.jpg")], capture_output=True, text=True, timeout=300, env=env()
  )
  assert broken.returncode == 1 and f"Cannot decode '{tmp_path / 'broken.jpg'}'" in broken.stderr


def test_inspect_writes_figure_3_and_figure_4_of_a_run(trained_workdir, tmp_path):
  """--out=~/inside, as a shell passes it on: the figures go to the home directory's folder, not to a
  folder named ~ in the current one."""
  out = tmp_path / "inside"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "alexnet_jax.tools.figures",
      f"--workdir={trained_workdir}",
      "--out=~/inside",
      "--queries=2",
      "--neighbours=3",
    ],
    capture_output=True,
    text=True,
    timeout=300,
    env={**env(), "HOME": str(tmp_path)},
    cwd=tmp_path,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  for name in ("conv1_kernels.png", "neighbours.png"):
    assert (out / name).stat().st_size > 1000 and f"Wrote {out / name}" in result.stdout
  assert not (tmp_path / "~").exists()


def test_inference_loads_a_run_trained_before_a_config_key_existed(trained_workdir, tmp_path):
  """A workdir whose config.json lacks keys added later (model.activation, model.lrn_alpha): they take
  their defaults, as the run was trained; dropout takes fc6's and fc7's inputs and rescales in training, as
  the code did before those keys existed, not today's defaults."""
  from alexnet_jax.tools import inference

  workdir = copy_of(trained_workdir, tmp_path)
  stored = json.loads((workdir / "config.json").read_text())
  for key in ("activation", "lrn_alpha", "dropout_placement", "dropout_scaling"):
    del stored["model"][key]
  (workdir / "config.json").write_text(json.dumps(stored))
  net = inference.load(str(workdir))
  assert net.config.model.activation == "relu" and net.config.model.width_multiplier == 0.125
  assert net.model.dropout_placement == "fc6_fc7_inputs" and net.model.dropout_scaling == "in_training"


def test_non_finite_losses_stop_at_the_first_or_after_too_many_skipped_in_a_row():
  from alexnet_jax.training import loop, optim

  logged = [
    {"loss": 1.0, "learning_rate": 0.01},
    {"loss": float("nan"), "learning_rate": 0.01},
    {"loss": 2.0, "learning_rate": 0.01},
  ]
  assert loop.nonfinite_problem("stop", logged[:1], 40, 0) is None
  assert loop.nonfinite_problem("stop", logged, 40, 0) == "Non-finite training loss at step 42 (learning rate 0.01)"
  assert loop.nonfinite_problem("skip", logged, 40, 0) is None  # skipped, training goes on
  many = loop.nonfinite_problem(
    "skip", [{"loss": float("inf"), "learning_rate": 0.5}] * 12, 40, optim.MAX_SKIPPED_IN_A_ROW + 2
  )
  assert many.startswith(f"{optim.MAX_SKIPPED_IN_A_ROW + 2} updates in a row") and "up to step 52" in many


def test_a_photo_is_squashed_before_it_is_fitted_where_the_runs_dataset_was():
  """The study's datasets were squashed to 224x224 (aspect ratio not kept) before the 128 px fit: a wide
  photo keeps its left and right thirds there. Section 2's fit (ImageNet) keeps only the centre."""
  from alexnet_jax import configlib
  from alexnet_jax.tools import inference

  photo = np.zeros((100, 300, 3), np.uint8)
  photo[:, :100, 0] = photo[:, 100:200, 1] = photo[:, 200:, 2] = 255  # red, green, blue thirds
  study = configlib.load_config(f"{REPO}/configs/alexnet.py:study")
  assert inference.squash_side(study) == 224
  assert inference.squash_side(configlib.load_config(f"{REPO}/configs/alexnet.py")) == 0
  for squash, red_share in ((224, 1 / 3), (0, 0.0)):
    net = inference.Network(study, None, {}, [], 128, 0, squash)
    fitted = net.fit(photo)
    assert fitted.shape == (128, 128, 3)
    assert abs((fitted[..., 0] > 128).mean() - red_share) < 0.02, squash
