"""Which records make each batch (data/order.py), against the stream written out the long way."""

import numpy as np
import pytest

from alexnet_jax.data import order


def reference_batches(n, batch_size, seed, process_index, process_count, num_batches, shuffle=True):
  """The definition, element by element: concatenate epoch permutations, deal the stream round-robin,
  cut this process's share into batches."""
  stream = []
  epoch = 0
  needed = (num_batches * batch_size) * process_count + process_index + 1
  while len(stream) < needed:
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
    stream.extend(rng.permutation(n).tolist() if shuffle else range(n))
    epoch += 1
  mine = [stream[i] for i in range(process_index, len(stream), process_count)]
  return [mine[k * batch_size : (k + 1) * batch_size] for k in range(num_batches)]


@pytest.mark.parametrize(
  "n,batch_size,process_count,shuffle",
  [
    (103, 16, 4, True),  # batches straddle epochs
    (10, 16, 3, True),  # one batch spans several epochs
    (50, 7, 1, False),  # unshuffled: the records in order, repeated
  ],
)
def test_batches_follow_the_definition(n, batch_size, process_count, shuffle):
  for p in range(process_count):
    want = reference_batches(n, batch_size, 5, p, process_count, 20, shuffle)
    got = order.TrainOrder(n, batch_size, seed=5, process_index=p, process_count=process_count, shuffle=shuffle)
    assert [got[k].tolist() for k in range(20)] == want


def test_a_batch_is_a_function_of_its_number_alone():
  """What makes the loader state a single count: batch k computed first, or after others, is the same."""
  sequential = order.TrainOrder(103, 16, seed=1)
  walked = [sequential[k] for k in range(60)]  # past many epochs, evicting cached permutations
  fresh = order.TrainOrder(103, 16, seed=1)
  for k in (59, 3, 40, 0, 27):
    np.testing.assert_array_equal(fresh[k], walked[k])


def test_shards_are_disjoint_and_cover_each_epoch_which_is_reshuffled():
  n, processes = 103, 4
  shards = [order.TrainOrder(n, 1, seed=7, process_index=p, process_count=processes) for p in range(processes)]
  stream = [int(shards[i % processes][i // processes][0]) for i in range(3 * n)]
  epochs = [stream[e * n : (e + 1) * n] for e in range(3)]
  assert all(sorted(e) == list(range(n)) for e in epochs)
  assert epochs[0] != epochs[1] != epochs[2]
  per_process = [set(stream[p:n:processes]) for p in range(processes)]
  assert sum(len(s) for s in per_process) == n and set.union(*per_process) == set(range(n))


def test_seeds_give_different_orders_and_any_integer_seed_works():
  assert order.TrainOrder(1000, 32, seed=0)[0].tolist() != order.TrainOrder(1000, 32, seed=1)[0].tolist()
  assert sorted(order.epoch_permutation(-3, 0, 50).tolist()) == list(range(50))


def test_eval_order_takes_every_record_once_with_equal_shares():
  batches = [order.eval_order(10, 2, process_index=p, process_count=3) for p in range(3)]
  assert [[b.tolist() for b in bs] for bs in batches] == [[[0, 3], [6, 9]], [[1, 4], [7]], [[2, 5], [8]]]


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match="process_index"):
    order.TrainOrder(10, 2, seed=0, process_index=2, process_count=2)
  with pytest.raises(IndexError):
    order.TrainOrder(10, 2, seed=0)[-1]
