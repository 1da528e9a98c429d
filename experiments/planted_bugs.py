r"""Planted bugs: do the fast tests catch one-line mistakes in the code they guard?

    python -m experiments.planted_bugs [--only=lrn_exponent,...] [--out=experiments/results/planted_bugs.json]
    python -m experiments.planted_bugs --check   # only: does every mutation still match the code?

For each mutation below (a sign, an offset, a dropped argument, a swapped axis: the slips a tired edit
makes), the repository is copied to a temporary folder, the one line is changed there, and the fast tests
(`-m "not slow"`) run on the copy: first the test files named with the mutation, then, if those pass, all
of them. A mutation is *caught* when a test fails. The working tree is never touched. Not part of CI (a
full pass takes minutes per surviving mutation); its result is experiments/results/planted_bugs.json.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

from absl import flags

from alexnet_jax import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the tests read: the code, and the committed README and results (the study's tests check the report).
COPIED = ("alexnet_jax", "configs", "experiments", "tests", "pyproject.toml", "requirements.txt", "README.md")


@dataclasses.dataclass(frozen=True)
class Mutation:
  """Replace `old` (which must occur exactly once in `path`) by `new`; `tests` are tried first."""

  name: str
  path: str
  old: str
  new: str
  tests: Tuple[str, ...]


MUTATIONS = (
  Mutation(
    "lrn_exponent_sign",
    "alexnet_jax/model/lrn.py",
    "(k + scale * window_sum) ** -beta",
    "(k + scale * window_sum) ** beta",
    ("tests/test_lrn.py",),
  ),
  Mutation(
    "lrn_matmul_gain_sign", "alexnet_jax/model/lrn.py", "gain = u**-beta", "gain = u**beta", ("tests/test_lrn.py",)
  ),
  Mutation(
    "lrn_matmul_gradient_sign",
    "alexnet_jax/model/lrn.py",
    "g * gain - 2.0 * alpha * beta",
    "g * gain + 2.0 * alpha * beta",
    ("tests/test_lrn.py",),
  ),
  Mutation(
    "lrn_alpha_always_per_size",
    "alexnet_jax/model/lrn.py",
    "alpha / size if alpha_per_size else alpha",
    "alpha / size",
    ("tests/test_lrn.py",),
  ),
  Mutation(
    "flip_rows_not_columns",
    "alexnet_jax/data/augment.py",
    "jnp.where(flip, images[:, :, ::-1, :], images)",
    "jnp.where(flip, images[:, ::-1, :, :], images)",
    ("tests/test_augment.py",),
  ),
  Mutation(
    "pca_eigvec_transposed",
    "alexnet_jax/data/augment.py",
    "jnp.asarray(eigvec, jnp.float32).T",
    "jnp.asarray(eigvec, jnp.float32)",
    ("tests/test_augment.py",),
  ),
  Mutation(
    "mean_image_cut_at_the_corner",
    "alexnet_jax/data/augment.py",
    "(images.shape[0],) + mean.shape), offsets, crop_size)",
    "(images.shape[0],) + mean.shape), 0 * offsets, crop_size)",
    ("tests/test_augment.py",),
  ),
  Mutation(
    "ten_crop_without_mirrors",
    "alexnet_jax/data/augment.py",
    "crops += [c[:, :, ::-1, :] for c in crops]",
    "crops += [c for c in crops]",
    ("tests/test_augment.py",),
  ),
  Mutation(
    "resized_crop_ratio_inverted",
    "alexnet_jax/data/augment.py",
    "crop_w = jnp.clip(jnp.sqrt(area * ratio)",
    "crop_w = jnp.clip(jnp.sqrt(area / ratio)",
    ("tests/test_augment.py",),
  ),
  Mutation(
    "coupled_decay_ignores_the_mask",
    "alexnet_jax/training/optim.py",
    "add_decayed_weights(weight_decay, mask),\n      scale_by_scheduled_lr(schedule),\n      optax.trace",
    "add_decayed_weights(weight_decay),\n      scale_by_scheduled_lr(schedule),\n      optax.trace",
    ("tests/test_optim.py",),
  ),
  Mutation(
    "plateau_factor_not_applied",
    "alexnet_jax/training/optim.py",
    "* state.lr_factor",
    "* 1.0",
    ("tests/test_optim.py",),
  ),
  Mutation(
    "plateau_patience_off_by_one",
    "alexnet_jax/training/optim.py",
    "if bad >= patience and",
    "if bad > patience and",
    ("tests/test_optim.py",),
  ),
  Mutation(
    "gradients_summed_not_averaged",
    "alexnet_jax/training/steps.py",
    "grads = lax.pmean(grads, axis_name)",
    "grads = lax.psum(grads, axis_name)",
    ("tests/test_steps.py",),
  ),
  Mutation(
    "same_rng_on_every_device",
    "alexnet_jax/training/steps.py",
    "rng = jax.random.fold_in(rng, lax.axis_index(axis_name))",
    "rng = jax.random.fold_in(rng, 0)",
    ("tests/test_steps.py",),
  ),
  Mutation(
    "label_smoothing_drops_the_uniform_part",
    "alexnet_jax/training/steps.py",
    "targets * (1.0 - label_smoothing) + label_smoothing / num_classes",
    "targets * (1.0 - label_smoothing)",
    ("tests/test_steps.py",),
  ),
  Mutation(
    "top_k_counts_one_too_many",
    "alexnet_jax/training/steps.py",
    "return ((rank < k) &",
    "return ((rank <= k) &",
    ("tests/test_steps.py",),
  ),
  Mutation(
    "eval_mask_ignored",
    "alexnet_jax/training/steps.py",
    '"count": jnp.sum(mask),',
    '"count": jnp.sum(mask * 0 + 1),',
    ("tests/test_steps.py",),
  ),
  Mutation(
    "pool_window_always_two",
    "alexnet_jax/model/models.py",
    "window = 3 if self.overlapping_pool else 2",
    "window = 2",
    ("tests/test_models.py",),
  ),
  Mutation(
    "masked_pool_gradient_to_every_maximum",
    "alexnet_jax/model/pooling.py",
    "& ~claimed",
    "& True",
    ("tests/test_pooling.py",),
  ),
  Mutation(
    "epoch_order_ignores_the_epoch",
    "alexnet_jax/data/order.py",
    "SeedSequence([seed % 2**63, epoch])",
    "SeedSequence([seed % 2**63, 0])",
    ("tests/test_order.py",),
  ),
  Mutation(
    "unpaired_standard_deviation",
    "alexnet_jax/analysis/effects.py",
    "values.std(ddof=1)",
    "values.std()",
    ("tests/test_effects.py",),
  ),
  Mutation(
    "did_not_train_inverted",
    "alexnet_jax/analysis/effects.py",
    "top1_error > 1.0 - TRAINED",
    "top1_error < 1.0 - TRAINED",
    ("tests/test_effects.py",),
  ),
  Mutation(
    "step_size_reading_inverted",
    "experiments/study/controls.py",
    "half_step.excludes_zero() and half_step.mean < 0",
    "half_step.excludes_zero() and half_step.mean > 0",
    ("tests/test_study_controls.py",),
  ),
  Mutation(
    "width_read_from_no_difference_alone",
    "experiments/study/controls.py",
    "if whole_vs_half.excludes_zero() and whole_vs_half.mean < 0:",
    "if whole_vs_half.mean < 0:",
    ("tests/test_study_controls.py",),
  ),
  Mutation(
    "runs_that_did_not_train_left_off_the_curves",
    "experiments/study/figures.py",
    "  for r in failed:\n    ax.plot(",
    "  for r in failed[:0]:\n    ax.plot(",
    ("tests/test_study.py",),
  ),
  Mutation(
    "damage_and_another_config_confused",
    "alexnet_jax/training/checkpointing.py",
    "return None if found == expected else",
    "return None if found != expected else",
    ("tests/test_checkpointing.py",),
  ),
  Mutation(
    "checkpoints_kept_without_limit",
    "alexnet_jax/training/checkpointing.py",
    "max_to_keep=max_to_keep, create",
    "max_to_keep=None, create",
    ("tests/test_checkpointing.py",),
  ),
  Mutation(
    "dropout_on_the_other_side_of_fc6_fc7",
    "alexnet_jax/model/models.py",
    'on_inputs = self.dropout_placement == "fc6_fc7_inputs"',
    'on_inputs = self.dropout_placement != "fc6_fc7_inputs"',
    ("tests/test_models.py",),
  ),
  Mutation(
    "dropout_rescaled_in_training_where_the_paper_halves_at_test",
    "alexnet_jax/model/models.py",
    'if self.dropout_scaling == "in_training":',
    "if True:",
    ("tests/test_models.py",),
  ),
  Mutation(
    "torch_net_dropout_never_rescaled",
    "experiments/benchmark/torch_net.py",
    'self.scale = 1.0 if scaling == "in_training" else 1.0 - rate',
    "self.scale = 1.0",
    ("tests/test_torch_net.py",),
  ),
  Mutation(
    "old_runs_read_with_todays_dropout",
    "alexnet_jax/configlib.py",
    "      node.setdefault(leaf, value)",
    "      pass",
    ("tests/test_ablate.py",),
  ),
  Mutation(
    "another_studys_runs_overwritten",
    "experiments/study/report_files.py",
    "if (made is not None and made != kept) or (made is None and training):",
    "if made is not None and made != kept:",
    ("tests/test_study.py",),
  ),
)


def copy_repo(to: str) -> None:
  for name in COPIED:
    source = os.path.join(REPO, name)
    if os.path.isdir(source):
      shutil.copytree(source, os.path.join(to, name), ignore=shutil.ignore_patterns("__pycache__"))
    else:
      shutil.copy(source, to)


def mismatch(mutation: Mutation, root: str = REPO):
  """Why `mutation` cannot be planted in the tree at `root`, or None where it can.

  Args:
    mutation: the mutation.
    root: a copy of the repository (by default the repository itself).

  Returns:
    One line naming the mutation and what does not match (its file or test missing, its text not found
    exactly once), or None.
  """
  missing = [p for p in (mutation.path, *mutation.tests) if not os.path.isfile(os.path.join(root, p))]
  if missing:
    return f"mutation {mutation.name}: {missing} do(es) not exist: update the mutation to the code."
  with open(os.path.join(root, mutation.path)) as f:
    count = f.read().count(mutation.old)
  if count != 1:
    return (
      f"mutation {mutation.name}: {mutation.old!r} occurs {count} times in {mutation.path} (expected once): "
      f"update the mutation to the code."
    )
  return None


def planted(mutation: Mutation, root: str):
  """The copy's text of the mutated file with the mutation applied, and its original text."""
  problem = mismatch(mutation, root)
  if problem:
    raise SystemExit(f"error: {problem}")
  with open(os.path.join(root, mutation.path)) as f:
    text = f.read()
  return text.replace(mutation.old, mutation.new), text


def fast_tests_fail(root: str, tests: List[str]) -> bool:
  """True when a fast test fails (or errors) in the copy at `root`; False when they all pass."""
  environment = dict(os.environ, PYTHONPATH=root)
  result = subprocess.run(
    [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-n", "0", "-p", "no:cacheprovider", *tests],
    cwd=root,
    env=environment,
    capture_output=True,
    text=True,
  )
  if result.returncode not in (0, 1):
    raise SystemExit(
      f"error: pytest could not run {tests} in the copy (exit {result.returncode}):\n"
      f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
    )
  return result.returncode == 1


def check_the_copy_is_imported(root: str) -> None:
  found = subprocess.run(
    [sys.executable, "-c", "import alexnet_jax; print(alexnet_jax.__file__)"],
    cwd=root,
    env=dict(os.environ, PYTHONPATH=root),
    capture_output=True,
    text=True,
  ).stdout.strip()
  if not os.path.realpath(found).startswith(os.path.realpath(root)):
    raise SystemExit(f"error: the copy's tests would import alexnet_jax from {found!r}, not from {root}.")


def run_one(mutation: Mutation, root: str) -> dict:
  """Plants `mutation` in the copy at `root`, runs the fast tests, and puts the line back."""
  mutated, original = planted(mutation, root)
  path = os.path.join(root, mutation.path)
  started = time.time()
  try:
    with open(path, "w") as f:
      f.write(mutated)
    caught_by = "named tests" if fast_tests_fail(root, list(mutation.tests)) else None
    if caught_by is None and fast_tests_fail(root, ["tests"]):
      caught_by = "all fast tests"
  finally:
    with open(path, "w") as f:
      f.write(original)
  return {
    "name": mutation.name,
    "path": mutation.path,
    "caught": caught_by is not None,
    "caught_by": caught_by,
    "seconds": round(time.time() - started, 1),
  }


def check(mutations) -> None:
  """Says whether every mutation still matches the code (`mismatch`); exit status 1 where one does not."""
  problems = [p for p in (mismatch(m) for m in mutations) if p]
  for problem in problems:
    print(f"error: {problem}", file=sys.stderr)
  if problems:
    sys.exit(1)
  print(f"All {len(mutations)} mutations match the code.")


def main(argv):
  del argv
  chosen = [m for m in MUTATIONS if not FLAGS.only or m.name in FLAGS.only]
  unknown = set(FLAGS.only) - {m.name for m in MUTATIONS}
  if unknown:
    raise SystemExit(f"error: unknown mutation(s) {sorted(unknown)}; known: {[m.name for m in MUTATIONS]}.")
  if FLAGS.check:
    check(chosen)
    return
  results = []
  with tempfile.TemporaryDirectory(prefix="planted_") as root:
    copy_repo(root)
    check_the_copy_is_imported(root)
    for mutation in chosen:
      planted(mutation, root)  # every mutation still matches the code, before anything runs
    named = sorted({t for m in chosen for t in m.tests})
    if fast_tests_fail(root, named):
      raise SystemExit(f"error: the unmutated fast tests {named} fail: fix them before planting bugs.")
    for mutation in chosen:
      results.append(run_one(mutation, root))
      r = results[-1]
      print(
        f"{'caught' if r['caught'] else 'MISSED'}  {r['name']:42s} {r['caught_by'] or '':15s} {r['seconds']} s",
        flush=True,
      )
  missed = [r["name"] for r in results if not r["caught"]]
  print(
    f"{len(results) - len(missed)} of {len(results)} planted bugs caught" + (f"; missed: {missed}" if missed else "")
  )
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(
        {"command": "python -m experiments.planted_bugs " + " ".join(sys.argv[1:]), "results": results}, f, indent=1
      )
  sys.exit(1 if missed else 0)


FLAGS = flags.FLAGS

if __name__ == "__main__":
  flags.DEFINE_list("only", [], "Mutation names to plant (default: all).")
  flags.DEFINE_string("out", "", "Write the results as JSON here.")
  flags.DEFINE_bool("check", False, "Only check that every mutation still matches the code; run no tests.")
  cli.run(main)
