r"""The paper's claims, measured: one command runs the reproduction study and writes its report.

    python -m experiments.study --workdir=~/runs/study

trains every arm of the dataset (experiments/study/arms.py; `configs/alexnet.py:study`, the CPU geometry,
plus the arm's overrides) for its seeds, each as `python -m alexnet_jax.main` in
`<workdir>/runs/<arm>/seed<k>` (alexnet_jax.analysis.sweep: finished runs are skipped, interrupted
ones resume, a workdir of another config is refused), then copies each finished run's summary.json,
metrics.jsonl, final conv1 kernels and the steps it resumed from to `--report_dir` and writes the report there
(experiments/study/report.py); a report_dir holding runs that the workdir did not make is refused, so a new
study never overwrites the committed one. Seeds run in rounds (seed 0 of every arm, then seed 1, ...), so a
study cut short has every claim measured once before any is measured twice. `--report_only` rewrites the report from
the copies (after copying the finished runs of --workdir, where it exists). `--readme=README.md` also
writes the report's headline into the repository README's findings block. `--compare_to=DIR` adds how
the results move between this budget and DIR's (experiments/study/budget.py). The canonical geometry on a
GPU: `--config=configs/alexnet.py:imagenette` with `--set`s.
"""

import os
import sys
import time

from absl import flags

from alexnet_jax import cli, configlib, paths
from alexnet_jax.analysis import sweep
from experiments.study import arms as arms_lib
from experiments.study import report, report_files

FLAGS = flags.FLAGS


def publish(report_dir: str, readme: str = "", compare_to: str = "", arms=arms_lib.ARMS, **kwargs) -> None:
  """Writes the report in report_dir and, with `readme`, its headline into that file's findings block.

  Args:
    report_dir: the report folder (its runs/ are read).
    readme: a file with a findings block (report_files.README_BEGIN), or "" for none.
    compare_to: the report folder of the same study at another budget, or "".
    arms: the arms of the study's dataset.
    **kwargs: report.write_report's dataset, replicate_from, command and invocation_s.
  """
  report.write_report(report_dir, arms, arms_lib.CLAIMS, compare_to=compare_to, readme=readme, **kwargs)
  print(f"Report: {report_dir}/README.md")
  if readme:
    print(f"Findings: {readme}")


def refuse(error: configlib.ConfigError) -> None:
  """Prints the error and exits with status 2 (a usage error: nothing was trained or written)."""
  print(f"error: {error}", file=sys.stderr)
  sys.exit(2)


def replicate_from(dataset: arms_lib.Dataset) -> str:
  """The second dataset's report folder for the replication section: --replicate_from, by default
  Imagewoof's where it exists (for the Imagenette report only); "" for none."""
  if FLAGS.replicate_from:
    if dataset.name != "imagenette":
      refuse(configlib.ConfigError("--replicate_from: only the Imagenette report reads a replication (on Imagewoof)."))
    return paths.absolute(FLAGS.replicate_from)
  default = arms_lib.DATASETS["imagewoof"].report_dir
  return os.path.abspath(default) if dataset.name == "imagenette" and os.path.isdir(default) else ""


def main(argv):
  """Runs the study's missing runs (or, with --report_only, none) and writes its report."""
  del argv
  dataset = arms_lib.DATASETS[FLAGS.dataset]
  arms, config = arms_lib.arms_of(dataset), FLAGS.config or dataset.config
  report_dir, workdir = (
    paths.absolute(FLAGS.report_dir or dataset.report_dir),
    paths.absolute(FLAGS.workdir or dataset.workdir),
  )
  compare_to = os.path.expanduser(FLAGS.compare_to)  # relative stays relative: the report quotes it
  runs = arms_lib.plan(workdir, arms)
  facts = dict(dataset=dataset, replicate_from=replicate_from(dataset))
  try:
    if FLAGS.readme and dataset.name != "imagenette":
      raise configlib.ConfigError(
        "--readme: the README's findings are the Imagenette report's (it reads Imagewoof's runs beside its own); "
        "write them with `python -m experiments.study --report_only --readme=README.md`."
      )
    if FLAGS.readme:
      report_files.block_bounds(FLAGS.readme)  # refused before anything is trained or written
    report_files.check_compare_to(compare_to)
    report_files.check_report_dir(runs, report_dir, training=not FLAGS.report_only)
  except configlib.ConfigError as e:
    refuse(e)
  if FLAGS.report_only:
    if os.path.isdir(workdir):
      print(f"Copied {report_files.copy_finished(runs, report_dir)} finished runs from {workdir}.")
    publish(report_dir, FLAGS.readme, compare_to, arms, command=None, **facts)
    return
  try:
    sweep.check_counts(1, FLAGS.parallel, FLAGS.gpus)
    for arm in arms:
      sweep.validate(config, [(k, [v]) for k, v in arm.overrides.items()], FLAGS.set)
    sweep.check_existing_runs(runs, config, FLAGS.set)
  except configlib.ConfigError as e:
    refuse(e)
  os.makedirs(workdir, exist_ok=True)
  started, failure = time.time(), None
  try:
    sweep.execute(runs, config, FLAGS.set, FLAGS.parallel, FLAGS.gpus)
  except RuntimeError as e:  # the finished runs are still reported; the failed ones are named
    failure = e
  report_files.copy_finished(runs, report_dir)
  publish(
    report_dir,
    FLAGS.readme,
    compare_to,
    arms,
    command="python -m experiments.study " + " ".join(sys.argv[1:]),
    invocation_s=time.time() - started,
    **facts,
  )
  if failure:
    print(f"error: {failure}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  flags.DEFINE_enum(
    "dataset", "imagenette", list(arms_lib.DATASETS), "The dataset: its config, arms, seeds and report."
  )
  flags.DEFINE_string("config", "", "Config file and arg, as for alexnet_jax.main (default: the dataset's).")
  defaults = ", ".join(f"{d.workdir} for {d.data.short}" for d in arms_lib.DATASETS.values())
  flags.DEFINE_string("workdir", "", f"The study's runs, runs/<arm>/seed<k> (default: {defaults}).")
  flags.DEFINE_string(
    "report_dir",
    "",
    "Where the report (README.md, figures) and the runs' summaries and metrics go (default: the dataset's, "
    "experiments/results/study for Imagenette).",
  )
  flags.DEFINE_multi_string("set", [], "key=value overrides for every run (e.g. a GPU geometry).")
  flags.DEFINE_integer("parallel", 1, "Runs at once.")
  flags.DEFINE_integer("gpus", 0, "GPUs to spread parallel runs over (see alexnet_jax.analysis.sweep).")
  flags.DEFINE_bool("report_only", False, "Rewrite the report from report_dir/runs without training.")
  flags.DEFINE_string(
    "compare_to",
    "",
    "The report_dir of the same study at another num_epochs (e.g. experiments/results/study_15ep): the report "
    "adds how each arm's error and each claim's effect move between the two budgets, seed by seed.",
  )
  flags.DEFINE_string(
    "replicate_from",
    "",
    "The report_dir of the study on the second dataset (default: experiments/results/study_imagewoof, for the "
    "Imagenette report, where it exists): the report adds whether each finding replicates there.",
  )
  flags.DEFINE_string("readme", "", "Also rewrite the findings block of this file (the repository's README.md).")
  cli.run(main)
