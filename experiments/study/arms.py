"""The study's plan: its arms, the datasets it runs on, and the paper's claims each arm tests.

Everything the study decides before a run exists lives here, as data: which configurations run (each arm
is the study config plus overrides), with how many seeds on which dataset, and what each claim of the
paper predicts. The sweep, the report and the tests read these tables; nothing else declares an arm.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from alexnet_jax.analysis import sweep


@dataclasses.dataclass(frozen=True)
class Arm:
  """One configuration of the study: the study config plus `overrides`, trained for `seeds` seeds."""

  name: str
  overrides: Dict[str, object]
  seeds: int
  what: str


# The baseline is the paper's network at the study geometry. Claims with small paper effects (LRN,
# overlapping pooling) get 5 seeds, the others 3, tanh 6 (its epochs measure needs them) and the baseline 6
# (paired with tanh); the controls 2-5 (as many as the arm they control where that arm's reading needs them
# paired; the paper's init 1: it shows a failure; the paper's dropout placement 3, the evidence for the
# departure every other arm makes).
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
    "control for LRN: k = 1 (Caffe's default, Mishkin et al.'s k), the constant gain removed (1 / 1^0.75 = 1)",
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
    "dropout_paper",
    {"model.dropout_placement": "fc6_fc7_outputs"},
    3,
    "control for a departure: dropout on fc6's and fc7's outputs, section 4.2's placement (the others drop "
    "their inputs)",
  ),
  Arm(
    "paper_init",
    {"model.init_scheme": "paper"},
    1,
    "section 5's initialisation, N(0, 0.01) with biases of 1: the departure's evidence",
  ),
  Arm(
    "paper_init_raw",
    {"model.init_scheme": "paper", "augment.std_rgb": ()},
    1,
    "section 5's initialisation on inputs not divided by a std, the paper's scale: paper_init's control",
  ),
)


# How the runs' data was made, and what a copy made by the config's command (STUDY_COPY) can differ in.
PREPARATION = (
  "fast.ai's images squashed to 224x224 (the public copies of {source}), resized with antialiasing to "
  "128x128 and stored as JPEG quality 70 with 4:2:0 chroma in a folder DIR/{{train,val}}/<class>/; the runs "
  "read these files as they are (`python -m alexnet_jax.data.prepare --source=folder:DIR`). The config's "
  "command makes the same kind of copy from fast.ai's own images: equivalent, not identical. Its squashing "
  "and resampling differ from the public copies' pixel for pixel, so the last digits of each run's error "
  "differ; the seed-paired effects should agree within their noise."
)
LEADERBOARD_SOURCE = "fast.ai's leaderboard at 128 px, no test-time augmentation (github.com/fastai/imagenette)"


@dataclasses.dataclass(frozen=True)
class Data:
  """The facts of a dataset the report states: what it is, its size, how to get it, what others reached.

  `fetch`: what to do before `python -m alexnet_jax.data.prepare` (empty where prepare downloads it).
  `source`: the public 224x224 squashed copies the runs' 128 px data was made from.
  `leaderboard`: {epochs: top-1 accuracy (%)} of the best ResNet-family nets on LEADERBOARD_SOURCE.
  """

  title: str
  short: str
  content: str
  train_images: int
  val_images: int
  fetch: str
  leaderboard: Dict[int, float]
  source: str


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A dataset the study runs on: the config its runs train, its report folder, each arm's seeds there,
  its facts (Data) and the default --workdir its runs train in (one per dataset: their run folders share
  names)."""

  name: str
  config: str
  report_dir: str
  seeds: Dict[str, int]
  data: Data
  workdir: str


IMAGENETTE = Data(
  "Imagenette2",
  "Imagenette",
  "10 ImageNet classes",
  9469,
  3925,
  "",
  {5: 87.4, 20: 91.6, 80: 93.6},
  "the repository github.com/thunderInfy/imagenette at commit b850f030ff07",
)
IMAGEWOOF = Data(
  "Imagewoof2",
  "Imagewoof",
  "10 dog breeds of ImageNet",
  9025,
  3929,
  "download fast.ai's imagewoof2.tgz (github.com/fastai/imagenette) and unpack it to ~/imagewoof2",
  {5: 76.6, 20: 86.3, 80: 87.8},
  "the repository github.com/thunderInfy/imagewoof at commit 6338aeea0989",
)

# Imagenette: every arm. Imagewoof (ten dog breeds: a second, harder dataset): the arms of the findings
# that must replicate (LRN and its controls, pooling, the towers and their control, ReLU), declared before
# any of its runs was seen; the small-effect arms 5 seeds, the others 3.
DATASETS = {
  "imagenette": Dataset(
    "imagenette",
    "configs/alexnet.py:study",
    "experiments/results/study",
    {a.name: a.seeds for a in ARMS},
    IMAGENETTE,
    "~/runs/study",
  ),
  "imagewoof": Dataset(
    "imagewoof",
    "configs/alexnet.py:study_imagewoof",
    "experiments/results/study_imagewoof",
    dict(baseline=5, no_lrn=5, lrn_gain_only=5, lrn_k1=5, no_overlap=5, one_gpu_half=3, one_tower=3, tanh=3),
    IMAGEWOOF,
    "~/runs/study_imagewoof",
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
  numbers (None for a part it does not give). `anchors`: what later work measured for the same component,
  with its source (the claims table's column). `topic`: the component in a word or two, for the findings.
  `measured_by`: what the claim's headline verdict reads: 'error' (10-crop top-1), 'gap' (validation
  minus training error: the claim is about overfitting), 'epochs' (epochs to a training error).
  `epochs_too`: the claim also speaks of the epochs to converge (the report measures them beside).
  `anchor_effect`: the later anchors' top-1 error change of the arm over the baseline (points), where
  they measured the same comparison (not for pooling: Mishkin et al.'s 2x2 changes the output size).
  `paper_short`: what the paper reports, in a few words (the README's table)."""

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
  paper_short: str = ""


CLAIMS = (
  Claim(
    1,
    "3.1, figure 1",
    "ReLU trains much faster than tanh",
    "tanh",
    "speed",
    "a 4-layer CIFAR-10 net reached 25% training error 6x faster with ReLU",
    topic="ReLU against tanh",
    paper_short="6x faster (CIFAR-10)",
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
    paper_short="+1.7",
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
    paper_short="+1.4",
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
    paper_short="+0.4",
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
    paper_short="over +1",
  ),
  Claim(
    6,
    "4.1",
    "random crops and flips prevent substantial overfitting",
    "no_crop_flip",
    "overfit",
    '"without this scheme, our network suffers from substantial overfitting"',
    topic="random crops and flips",
    paper_short="substantial overfitting without",
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
    paper_short="substantial overfitting without; 2x the epochs with",
    measured_by="gap",
    epochs_too=True,
  ),
)


def plan(workdir: str, arms=ARMS) -> List[sweep.Run]:
  """Every (arm, seed) as a sweep.Run, in rounds of seeds: seed 0 of each arm, then seed 1, ..."""
  rounds = max(a.seeds for a in arms)
  return [
    sweep.Run(a.name, dict(a.overrides), seed, os.path.join(workdir, "runs", a.name, f"seed{seed}"))
    for seed in range(rounds)
    for a in arms
    if seed < a.seeds
  ]
