"""The decoding worker pool: the same batches as decoding in-process, errors that say what failed, a dead
worker that is reported instead of waited for, and no shared memory left behind."""

import os
import signal

import numpy as np
import pytest

from alexnet_jax.data import pipeline, sources
from alexnet_jax.data.decode_pool import DecodePool


def loader_config(data_dir, num_workers, **kwargs):
  return pipeline.LoaderConfig(
    data_dir=data_dir, name="synthetic_shapes", split="train", batch_size=48, seed=5, num_workers=num_workers, **kwargs
  )


def test_workers_yield_the_batches_of_in_process_decoding(synthetic_data_dir):
  """Batch for batch, across an epoch boundary (400 examples = 8.3 batches), training and evaluation."""
  in_process = pipeline.train_loader(loader_config(synthetic_data_dir, 0))
  pooled = pipeline.train_loader(loader_config(synthetic_data_dir, 3))
  try:
    for _ in range(11):
      want, got = next(in_process), next(pooled)
      np.testing.assert_array_equal(got["image"], want["image"])
      np.testing.assert_array_equal(got["label"], want["label"])
  finally:
    pooled.close()
  config = pipeline.LoaderConfig(
    data_dir=synthetic_data_dir, name="synthetic_shapes", split="val", batch_size=32, shuffle=False
  )
  want = list(pipeline.eval_batches(config.__class__(**{**config.__dict__, "num_workers": 0})))
  got = list(pipeline.eval_batches(config.__class__(**{**config.__dict__, "num_workers": 2})))
  assert len(got) == len(want) == 4 and got[-1]["mask"].sum() == 100 - 3 * 32
  for g, w in zip(got, want):
    for key in ("image", "label", "mask"):
      np.testing.assert_array_equal(g[key], w[key])


def test_state_moves_between_worker_counts(synthetic_data_dir):
  """The state counts batches, so a run saved with 2 workers resumes with 0 (and back) on the same batch."""
  two = pipeline.train_loader(loader_config(synthetic_data_dir, 2))
  try:
    for _ in range(5):
      next(two)
    state = two.get_state()
    expected = next(two)
    two.set_state({**state, "batches_returned": 1})  # back, with batches in flight
    second = next(two)
  finally:
    two.close()
  none = pipeline.train_loader(loader_config(synthetic_data_dir, 0))
  next(none)
  np.testing.assert_array_equal(next(none)["label"], second["label"])
  none.set_state(state)
  np.testing.assert_array_equal(next(none)["image"], expected["image"])
  with pytest.raises(sources.DatasetError, match="older input pipeline"):
    none.set_state({"last_seen_index": 3})  # grain's iterator state, before this loader
  with pytest.raises(sources.DatasetError, match="older input pipeline"):
    none.set_state({"batches_returned": 3})  # this loader's count, under grain's order


def _records_with_a_bad_image(count):
  """A source whose records are tf.Examples holding bytes that are no image (opened in the worker)."""
  from tensorflow_datasets.proto import tf_example_pb2

  example = tf_example_pb2.Example()
  example.features.feature["image"].bytes_list.value.append(b"\x00not a jpeg")
  example.features.feature["label"].int64_list.value.append(1)
  return [example.SerializeToString()] * count


def _records_that_are_not_examples(count):
  return [b"\xff\xfe not a serialized tf.Example"] * count


def test_a_decode_error_in_a_worker_arrives_with_its_message():
  pool = DecodePool(_records_with_a_bad_image, (4,), pipeline.decode_into, image_size=8, batch_size=2, num_workers=1)
  try:
    pool.submit(0, [0, 1])
    with pytest.raises(sources.DatasetError, match="Cannot decode image"):
      pool.collect(0)
  finally:
    pool.close()
  pool = DecodePool(
    _records_that_are_not_examples, (4,), pipeline.decode_into, image_size=8, batch_size=2, num_workers=1
  )
  try:
    pool.submit(0, [0, 1])
    with pytest.raises(RuntimeError, match="Decoding worker 0 failed: DecodeError"):
      pool.collect(0)
  finally:
    pool.close()


def _exit_while_starting(code):
  raise SystemExit(code)  # not an Exception: the worker ends, as on an error before it could serve


def test_a_worker_that_exits_is_reported_with_its_exit_code():
  pool = DecodePool(_exit_while_starting, (3,), pipeline.decode_into, image_size=8, batch_size=2, num_workers=1)
  try:
    pool.submit(0, [0, 1])
    with pytest.raises(RuntimeError, match=r"Decoding worker 0 \(pid \d+\) exited with code 3: its error"):
      pool.collect(0)
  finally:
    pool.close()


def test_a_dead_worker_is_reported_not_waited_for(synthetic_data_dir):
  loader = pipeline.train_loader(loader_config(synthetic_data_dir, 1))
  try:
    next(loader)
    pool = loader._pool
    os.kill(pool._processes[0].pid, signal.SIGKILL)
    pool._processes[0].join(timeout=10)
    with pytest.raises(RuntimeError, match=r"Decoding worker 0 \(pid \d+\) was killed by signal 9 \(out of memory\?\)"):
      for _ in range(pool.capacity + 1):  # past the batches it finished before it was killed
        next(loader)
  finally:
    loader.close()


def test_close_stops_the_workers_and_frees_the_shared_memory(synthetic_data_dir):
  loader = pipeline.train_loader(loader_config(synthetic_data_dir, 2))
  next(loader)
  pool = loader._pool
  names = [block.name.lstrip("/") for row in pool._blocks for block in row]
  assert all(os.path.exists(f"/dev/shm/{name}") for name in names)
  pids = loader.worker_pids()
  assert len(set(pids)) == 2 and os.getpid() not in pids
  for pid in pids:
    os.kill(pid, 0)  # alive: no error
  loader.close()
  loader.close()  # twice is fine
  assert not any(process.is_alive() for process in pool._processes)
  for pid in pids:  # stopped and reaped
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)
  assert not any(os.path.exists(f"/dev/shm/{name}") for name in names)


def test_workers_ignore_ctrl_c_and_stop_when_the_training_process_is_gone(tmp_path, synthetic_data_dir):
  """Ctrl-C signals the whole process group: the workers must leave it to the training process. And a
  training process killed outright must not leave its workers behind."""
  import subprocess
  import sys
  import time

  code = f"""
import os, signal, sys, time
from alexnet_jax.data import pipeline
loader = pipeline.train_loader(pipeline.LoaderConfig(data_dir={synthetic_data_dir!r}, name="synthetic_shapes",
                               split="train", batch_size=16, num_workers=2))
print("WORKERS", *[p.pid for p in loader._pool._processes], flush=True)
for p in loader._pool._processes:  # while they are still importing: the window a Ctrl-C once killed them in
  os.kill(p.pid, signal.SIGINT)
next(loader)
for p in loader._pool._processes:  # and once they are serving batches
  os.kill(p.pid, signal.SIGINT)
time.sleep(1.5)
next(loader); next(loader); next(loader)
print("AFTER-SIGINT", *[p.is_alive() for p in loader._pool._processes], flush=True)
time.sleep(600)
"""
  process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
  try:
    workers = list(map(int, process.stdout.readline().split()[1:]))
    assert process.stdout.readline().split() == ["AFTER-SIGINT", "True", "True"]
  finally:
    process.kill()
    process.wait()
  deadline = time.time() + 15
  while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in workers):
    time.sleep(0.5)
  alive = [
    pid for pid in workers if os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
  ]
  assert not alive, f"workers {alive} outlived their killed training process"


def test_output_arrays_are_reused_only_when_nothing_refers_to_them():
  from alexnet_jax.data.decode_pool import OutputArrays

  outputs = OutputArrays(batch_size=4, image_size=2)
  first = outputs.take()
  held = outputs.take()
  assert held[0] is not first[0]  # `first` is still referred to
  first_id = id(first[0])
  view = first[0][1:]
  del first
  assert all(id(images) != first_id for images in (outputs.take()[0], outputs.take()[0]))  # a view holds it
  del view
  assert id(outputs.take()[0]) == first_id  # now free again


def test_batches_held_by_the_caller_are_never_overwritten(synthetic_data_dir):
  loader = pipeline.train_loader(loader_config(synthetic_data_dir, 2))
  try:
    held = [next(loader) for _ in range(3)]
    copies = [{k: v.copy() for k, v in batch.items()} for batch in held]
    image_view = held[1]["image"][5:]
    del held[1]
    for _ in range(12):  # many times round every slot and every free output array
      next(loader)
    for batch, copy in zip([held[0], None, held[1]], copies):
      if batch is not None:
        np.testing.assert_array_equal(batch["image"], copy["image"])
        np.testing.assert_array_equal(batch["label"], copy["label"])
    np.testing.assert_array_equal(image_view, copies[1]["image"][5:])
  finally:
    loader.close()


def _page_faults_of_heap_churn(cycles=50):
  """Minor page faults per cycle of allocating four 256 KB arrays and freeing them: the pattern of a JPEG
  decode (output plus decoder buffers, freed together)."""
  import resource

  def cycle():
    blocks = [np.ones(256 * 1024, np.uint8) for _ in range(4)]
    del blocks

  for _ in range(5):
    cycle()
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(cycles):
    cycle()
  return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / cycles


def _churn_into_labels(records, images, labels):
  """A decode_into for the pool: reports the worker's page faults per churn cycle in labels[0]."""
  labels[:] = int(round(_page_faults_of_heap_churn()))
  images[:] = 0


def _faults_in_a_fresh_process(keep):
  import subprocess
  import sys

  code = (
    "import sys; sys.path.insert(0, 'tests'); import test_decode_pool as t; "
    "from alexnet_jax.data import decode_pool; "
    f"ok = decode_pool.keep_freed_memory() if {keep} else True; "
    "print(ok, t._page_faults_of_heap_churn())"
  )
  out = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    check=True,
    cwd=os.path.join(os.path.dirname(__file__), ".."),
  )
  ok, faults = out.stdout.split()
  return ok == "True", float(faults)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="Linux page-fault counts")
def test_decoding_workers_keep_freed_memory_instead_of_faulting_it_in_again():
  """In a fresh process glibc hands the churned megabyte back to the kernel every cycle (about 250 page
  faults, one per 4 KB page); with keep_freed_memory, and in a decoding worker, it does not."""
  applied, faults_with = _faults_in_a_fresh_process(keep=True)
  if not applied:
    pytest.skip("this C library has no mallopt (not glibc)")
  _, faults_without = _faults_in_a_fresh_process(keep=False)
  assert faults_without > 100, faults_without  # the behaviour the setting exists for
  assert faults_with < 5, faults_with
  pool = DecodePool(_records_that_are_not_examples, (4,), _churn_into_labels, image_size=8, batch_size=2, num_workers=1)
  try:
    pool.submit(0, [0, 1])
    assert pool.collect(0)["label"][0] < 5
  finally:
    pool.close()
