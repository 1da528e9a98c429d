r"""The paper's claims, measured: one command runs the reproduction study and writes its report.

    python -m experiments.study --workdir=~/runs/study

trains every arm below (`configs/alexnet.py:study`, the CPU geometry, plus the arm's overrides) for its
seeds, each as `python -m alexnet_jax.main` in `<workdir>/runs/<arm>/seed<k>` (alexnet_jax.analysis.ablate's runner:
finished runs are skipped, interrupted ones resume, a workdir of another config is refused), then copies
each finished run's summary.json, metrics.jsonl and final conv1 kernels to `--report_dir` and writes the report there
(experiments/study_report.py). Seeds run in rounds (seed 0 of every arm, then seed 1, ...), so a study cut
short has every claim measured once before any is measured twice. `--report_only` rewrites the report from
the copies (after copying the finished runs of --workdir, where it exists). `--readme=README.md` also
writes the report's headline into the repository README's findings block. `--compare_to=DIR` adds how
the results move between this budget and DIR's (experiments/study_budget.py). The canonical geometry on a
GPU: `--config=configs/alexnet.py:imagenette` with `--set`s.
"""

import dataclasses
import os
import shutil
import sys
import time
from typing import Dict, List, Optional, Tuple

from absl import flags
import numpy as np

from alexnet_jax import cli, configlib
from alexnet_jax.analysis import ablate


@dataclasses.dataclass(frozen=True)
class Arm:
  """One configuration of the study: the study config plus `overrides`, trained for `seeds` seeds."""

  name: str
  overrides: Dict[str, object]
  seeds: int
  what: str


# The baseline is the paper's network at the study geometry. Claims with small paper effects (LRN,
# overlapping pooling) get 5 seeds, the others 3; the controls 2-3 (as many as the arm they control where
# that arm's reading needs them paired; the paper's init 1: it shows a failure).
ARMS = (
  Arm("baseline", {}, 6, "the paper's network: two towers, LRN, overlapping pooling, dropout, augmentation"),
  Arm("no_lrn", {"model.use_lrn": False}, 5, "section 3.3: without local response normalisation"),
  Arm("no_overlap", {"model.overlapping_pool": False}, 5, "section 3.4: 2x2 stride-2 pooling"),
  Arm("tanh", {"model.activation": "tanh"}, 6, "section 3.1: tanh in place of ReLU"),
  Arm(
    "one_gpu_half",
    {"model.preset": "paper_one_gpu"},
    3,
    "section 3.2: the one-GPU net with half the kernels in conv1-conv4 (footnote 2)",
  ),
  Arm("no_dropout", {"model.dropout_rate": 0.0}, 3, "section 4.2: without dropout"),
  Arm(
    "no_crop_flip",
    {"augment.crop": "center", "augment.flip": False},
    3,
    "section 4.1: the centre patch, unflipped, at every presentation",
  ),
  Arm("no_pca", {"augment.pca_std": 0.0}, 3, "section 4.1: without PCA lighting noise"),
  Arm("lrn_gain_only", {"model.lrn_alpha": 0.0}, 3, "control for LRN: its constant gain alone, x / k^beta (alpha = 0)"),
  Arm(
    "lrn_k1",
    {"model.lrn_k": 1.0},
    5,
    "control for LRN: k = 1 (Caffe's default, Mishkin et al.'s setting), most of the constant gain removed",
  ),
  Arm(
    "one_tower",
    {"model.preset": "one_tower"},
    3,
    "control for the towers: full width, every layer connected to all channels",
  ),
  Arm(
    "no_lrn_lr_half",
    {"model.use_lrn": False, "optim.learning_rate": 0.01},
    2,
    "control for LRN: no LRN at half the baseline's learning rate",
  ),
  Arm(
    "no_lrn_lr_double",
    {"model.use_lrn": False, "optim.learning_rate": 0.04},
    2,
    "control for LRN: no LRN at twice the baseline's learning rate",
  ),
  Arm(
    "no_dropout_lr_half",
    {"model.dropout_rate": 0.0, "optim.learning_rate": 0.01},
    3,
    "control for dropout: no dropout at half the baseline's learning rate (dropout's effect on the step size)",
  ),
  Arm(
    "paper_init",
    {"model.init_scheme": "paper"},
    1,
    "section 5's initialisation, N(0, 0.01) with biases of 1: the departure's evidence",
  ),
)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A dataset the study runs on: the config its runs train, its report folder, and each arm's seeds there."""

  name: str
  config: str
  report_dir: str
  seeds: Dict[str, int]


# Imagenette: every arm. Imagewoof (ten dog breeds: a second, harder dataset): the arms of the findings
# that must replicate (LRN and its controls, pooling, the towers and their control, ReLU), declared before
# any of its runs was seen; the small-effect arms 5 seeds, the others 3.
DATASETS = {
  "imagenette": Dataset(
    "imagenette", "configs/alexnet.py:study", "experiments/results/study", {a.name: a.seeds for a in ARMS}
  ),
  "imagewoof": Dataset(
    "imagewoof",
    "configs/alexnet.py:study_imagewoof",
    "experiments/results/study_imagewoof",
    dict(baseline=5, no_lrn=5, lrn_gain_only=5, lrn_k1=5, no_overlap=5, one_gpu_half=3, one_tower=3, tanh=3),
  ),
}


def arms_of(dataset: Dataset) -> Tuple[Arm, ...]:
  """The arms run on `dataset`, in ARMS order, each with its seeds there."""
  return tuple(dataclasses.replace(a, seeds=dataset.seeds[a.name]) for a in ARMS if a.name in dataset.seeds)


@dataclasses.dataclass(frozen=True)
class Claim:
  """A claim of the paper and the arm that tests it against the baseline.

  `kind`: 'error' (removing the component raises the error), 'overfit' (it also widens the gap between
  validation and training error), 'speed' (the arm needs more epochs to a fixed training error).
  `paper_effect`: the paper's (top-1, top-5) error increase of the arm over the baseline, where it gives
  numbers (None for a part it does not give). `topic`: the component in a word or two, for the findings.
  `measured_by`: what the claim's headline verdict reads: 'error' (10-crop top-1), 'gap' (validation
  minus training error: the claim is about overfitting), 'epochs' (epochs to a training error).
  `epochs_too`: the claim also speaks of the epochs to converge (the report measures them beside).
  `anchor_effect`: the later anchors' top-1 error change of the arm over the baseline (points), where
  they measured the same comparison (not for pooling: Mishkin et al.'s 2x2 changes the output size)."""

  number: int
  section: str
  claim: str
  arm: str
  kind: str
  paper: str
  paper_effect: Optional[Tuple[Optional[float], Optional[float]]] = None
  anchors: str = ""
  topic: str = ""
  measured_by: str = "error"
  epochs_too: bool = False
  anchor_effect: Optional[float] = None


CLAIMS = (
  Claim(
    1,
    "3.1, figure 1",
    "ReLU trains much faster than tanh",
    "tanh",
    "speed",
    "a 4-layer CIFAR-10 net reached 25% training error 6x faster with ReLU",
    topic="ReLU against tanh",
    measured_by="epochs",
  ),
  Claim(
    2,
    "3.2",
    "two towers beat a one-GPU net with half the kernels in conv1-conv4",
    "one_gpu_half",
    "error",
    "+1.7 / +1.2 for the one-GPU net",
    (1.7, 1.2),
    topic="two towers",
  ),
  Claim(
    3,
    "3.3",
    "local response normalisation lowers the error",
    "no_lrn",
    "error",
    "+1.4 / +1.2 without LRN; CIFAR-10 4-layer net 11% -> 13%",
    (1.4, 1.2),
    "Mishkin et al. 2016 (CaffeNet, 128 px ImageNet): top-1 accuracy 0.470 with LRN, 0.471 without "
    "(-0.1 without); VGG table 3: A 29.6 / 10.4 vs A-LRN 29.7 / 10.5 (-0.1 / -0.1 without)",
    topic="LRN",
    anchor_effect=-0.1,
  ),
  Claim(
    4,
    "3.4",
    "overlapping pooling lowers the error (and overfits slightly less)",
    "no_overlap",
    "overfit",
    "+0.4 / +0.3 with 2x2 stride-2 pooling",
    (0.4, 0.3),
    "Mishkin et al. 2016: top-1 accuracy 0.471 with 3x3/2, 0.484 with 2x2/2 (-1.3 with 2x2; their "
    "2x2 changes the output size, unlike the paper's comparison)",
    topic="overlapping pooling",
  ),
  Claim(
    5,
    "4.1",
    "PCA lighting lowers the top-1 error by over 1%",
    "no_pca",
    "error",
    "over +1 top-1 without it",
    (1.0, None),
    topic="PCA lighting",
  ),
  Claim(
    6,
    "4.1",
    "random crops and flips prevent substantial overfitting",
    "no_crop_flip",
    "overfit",
    '"without this scheme, our network suffers from substantial overfitting"',
    topic="random crops and flips",
    measured_by="gap",
  ),
  Claim(
    7,
    "4.2",
    "dropout prevents substantial overfitting and roughly doubles the epochs to converge",
    "no_dropout",
    "overfit",
    "overfits substantially without; about 2x the iterations with it",
    topic="dropout",
    measured_by="gap",
    epochs_too=True,
  ),
)


def plan(workdir: str, arms=ARMS) -> List[ablate.Run]:
  """Every (arm, seed) as an ablate.Run, in rounds of seeds: seed 0 of each arm, then seed 1, ..."""
  rounds = max(a.seeds for a in arms)
  return [
    ablate.Run(a.name, dict(a.overrides), seed, os.path.join(workdir, "runs", a.name, f"seed{seed}"))
    for seed in range(rounds)
    for a in arms
    if seed < a.seeds
  ]


def copy_finished(runs: List[ablate.Run], report_dir: str) -> int:
  """Copies summary.json (diverged.json) and metrics.jsonl (and config.json) of each finished run to
  report_dir/runs/<arm>/seed<k>; returns how many runs were copied."""
  copied = 0
  for run in runs:
    if not run.done:
      continue
    target = os.path.join(report_dir, "runs", run.name, f"seed{run.seed}")
    os.makedirs(target, exist_ok=True)
    for name in (os.path.basename(run.summary_path), "metrics.jsonl", "config.json"):
      shutil.copyfile(os.path.join(run.workdir, name), os.path.join(target, name))
    kernels = os.path.join(target, "conv1_kernels.npy")
    if not os.path.exists(kernels) and not run.diverged:  # a diverged net's kernels are not finite
      kernel = final_conv1_kernels(run.workdir)
      if kernel is None:
        print(f"note: {run.workdir} has no checkpoint; figure 3 leaves out {run.name} seed {run.seed}.")
      else:
        np.save(kernels, kernel)
    copied += 1
  return copied


def final_conv1_kernels(workdir: str) -> Optional[np.ndarray]:
  """conv1's kernel [k, k, 3, n] from the newest checkpoint of a finished run (figure 3's analogue); None
  where the run keeps no checkpoint (one copied from a committed report, or whose checkpoints were deleted)."""
  import orbax.checkpoint as ocp

  from alexnet_jax.tools import inference

  try:
    step = inference.latest_step(workdir)
  except inference.InferenceError:
    return None
  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
  return np.asarray(state["params"]["conv1"]["kernel"], np.float32)


README_BEGIN = "<!-- study findings: written by `python -m experiments.study --readme=README.md`; do not edit -->"
README_END = "<!-- end of study findings -->"


def write_report(report_dir: str, readme: str = "", compare_to: str = "", arms=ARMS, **kwargs) -> None:
  """The report in report_dir; with `readme`, the report's headline into that file's findings block;
  with `compare_to`, the comparison with that report folder's budget."""
  from experiments import study_report  # imported here: the runs never need it

  headline = study_report.write_report(report_dir, arms, CLAIMS, compare_to=compare_to, **kwargs)
  print(f"Report: {report_dir}/README.md")
  if readme:
    replace_block(readme, headline)
    print(f"Findings: {readme}")


def block_bounds(path: str):
  """The file's text and where its findings block's text starts and ends; ConfigError when it has none."""
  try:
    with open(path) as f:
      content = f.read()
  except OSError as e:
    raise configlib.ConfigError(f"--readme={path}: {e.strerror}.") from e
  begin, end = content.find(README_BEGIN), content.find(README_END)
  if begin < 0 or end < begin:
    raise configlib.ConfigError(
      f"--readme={path} has no findings block to rewrite: it needs the line {README_BEGIN!r} and, "
      f"after it, {README_END!r}."
    )
  return content, begin + len(README_BEGIN), end


def replace_block(path: str, text: str) -> None:
  """Puts `text` between README_BEGIN and README_END in the file at `path`."""
  content, begin, end = block_bounds(path)
  with open(path, "w") as f:
    f.write(content[:begin] + "\n" + text + "\n" + content[end:])


def check_compare_to(path: str) -> None:
  """ConfigError unless `path` is a report folder of this study with finished runs of the baseline."""
  if path and not os.path.isdir(os.path.join(path, "runs", "baseline")):
    raise configlib.ConfigError(
      f"--compare_to={path} holds no study runs (no {os.path.join(path, 'runs', 'baseline')}): give the "
      f"--report_dir of the same study at another budget, e.g. experiments/results/study_15ep."
    )


def main(argv):
  del argv
  dataset = DATASETS[FLAGS.dataset]
  arms, config = arms_of(dataset), FLAGS.config or dataset.config
  report_dir = os.path.abspath(FLAGS.report_dir or dataset.report_dir)
  workdir = os.path.abspath(os.path.expanduser(FLAGS.workdir))
  runs = plan(workdir, arms)
  try:
    if FLAGS.readme:
      block_bounds(FLAGS.readme)  # refused before anything is trained or written
    check_compare_to(FLAGS.compare_to)
  except configlib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if FLAGS.report_only:
    if os.path.isdir(workdir):
      print(f"Copied {copy_finished(runs, report_dir)} finished runs from {workdir}.")
    write_report(report_dir, FLAGS.readme, FLAGS.compare_to, arms, command=None)
    return
  try:
    ablate.check_counts(1, FLAGS.parallel, FLAGS.gpus)
    for arm in arms:
      ablate.validate(config, [(k, [v]) for k, v in arm.overrides.items()], FLAGS.set)
    ablate.check_existing_runs(runs, config, FLAGS.set)
  except configlib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  os.makedirs(workdir, exist_ok=True)
  started, failure = time.time(), None
  try:
    ablate.execute(runs, config, FLAGS.set, FLAGS.parallel, FLAGS.gpus)
  except RuntimeError as e:  # the finished runs are still reported; the failed ones are named
    failure = e
  copy_finished(runs, report_dir)
  write_report(
    report_dir,
    FLAGS.readme,
    FLAGS.compare_to,
    arms,
    command="python -m experiments.study " + " ".join(sys.argv[1:]),
    invocation_s=time.time() - started,
  )
  if failure:
    print(f"error: {failure}", file=sys.stderr)
    sys.exit(1)


FLAGS = flags.FLAGS

if __name__ == "__main__":
  flags.DEFINE_enum("dataset", "imagenette", list(DATASETS), "The dataset: its config, arms, seeds and report.")
  flags.DEFINE_string("config", "", "Config file and arg, as for alexnet_jax.main (default: the dataset's).")
  flags.DEFINE_string("workdir", "~/runs/study", "The study's runs: runs/<arm>/seed<k>.")
  flags.DEFINE_string(
    "report_dir",
    "",
    "Where the report (README.md, figures) and the runs' summaries and metrics go (default: the dataset's, "
    "experiments/results/study for Imagenette).",
  )
  flags.DEFINE_multi_string("set", [], "key=value overrides for every run (e.g. a GPU geometry).")
  flags.DEFINE_integer("parallel", 1, "Runs at once.")
  flags.DEFINE_integer("gpus", 0, "GPUs to spread parallel runs over (see alexnet_jax.analysis.ablate).")
  flags.DEFINE_bool("report_only", False, "Rewrite the report from report_dir/runs without training.")
  flags.DEFINE_string(
    "compare_to",
    "",
    "The report_dir of the same study at another num_epochs (e.g. experiments/results/study_15ep): the report "
    "adds how each arm's error and each claim's effect move between the two budgets, seed by seed.",
  )
  flags.DEFINE_string("readme", "", "Also rewrite the findings block of this file (the repository's README.md).")
  cli.run(main)
