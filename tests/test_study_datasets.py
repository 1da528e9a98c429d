"""The study's report across datasets (experiments/study/): a dataset's report covers the arms it runs,
Imagenette's findings are read against Imagewoof's, and a run's wall time counts every segment; on made-up
runs whose statistics are computed by hand."""

import json
import os
import re
import shutil

from test_study import _fake_run, _kernels, _lines_run_into_a_table

from alexnet_jax.analysis import sweep
from alexnet_jax.training import loop
from alexnet_jax.analysis import effects
from experiments.study import (
  arms,
  measures,
  prose,
  recipe,
  replication,
  report,
  report_files,
  reproduce,
  tables,
  transfer,
)

NETTE, WOOF = arms.DATASETS["imagenette"], arms.DATASETS["imagewoof"]


def _study(folder, deltas, base=(0.30, 0.40, 0.50)):
  """Made-up runs: the baseline's errors `base`, each arm's `deltas` (points) above them, seed by seed."""
  for seed, error in enumerate(base):
    _fake_run(folder / "runs" / "baseline" / f"seed{seed}", seed, error, error - 0.1, _kernels(True))
  for name, points in deltas.items():
    for seed, (error, delta) in enumerate(zip(base, points)):
      _fake_run(folder / "runs" / name / f"seed{seed}", seed, error + delta / 100, error - 0.1, _kernels(False))


def _perf(path, walls, steps=None):
  """A metrics.jsonl of perf records only, with these wall times."""
  with open(path, "w") as f:
    for i, wall in enumerate(walls):
      f.write(json.dumps({"kind": "perf", "step": (steps or range(len(walls)))[i], "perf/wall_time_s": wall}) + "\n")


def test_a_resumed_runs_wall_time_adds_each_segments_last_record_to_the_summarys(tmp_path):
  # The clock restarted once (30 -> 5): the first segment ran 30 s to its checkpoint, the second 40 s in all.
  _perf(tmp_path / "old.jsonl", [10.0, 20.0, 30.0, 5.0, 15.0, 25.0])
  assert measures.wall_time(str(tmp_path / "old.jsonl"), {"wall_time_s": 40.0}) == (70.0, 2)
  # Two restarts: 12 + 8 + the summary's 9.
  _perf(tmp_path / "twice.jsonl", [6.0, 12.0, 4.0, 8.0, 3.0])
  assert measures.wall_time(str(tmp_path / "twice.jsonl"), {"wall_time_s": 9.0}) == (29.0, 3)
  # A run whose trainer carried the clock across the resume: summary.json already has the total.
  _perf(tmp_path / "new.jsonl", [10.0, 20.0, 30.0, 32.0, 40.0])
  assert measures.wall_time(str(tmp_path / "new.jsonl"), {"wall_time_s": 50.0}) == (50.0, 1)


def test_the_report_counts_every_segment_of_a_resumed_run(tmp_path):
  _study(tmp_path, {})
  metrics = tmp_path / "runs" / "baseline" / "seed1" / "metrics.jsonl"
  with open(metrics, "a") as f:  # a perf record of 1200 s, then the clock starts again at 60 s
    for wall in (1200.0, 60.0):
      f.write(json.dumps({"kind": "perf", "step": 9, "perf/wall_time_s": wall}) + "\n")
  report.write_report(str(tmp_path), arms.ARMS, arms.CLAIMS)
  text = (tmp_path / "README.md").read_text()
  # 1200 s + the summary's 600 s = 30 minutes; the others 10.
  assert "| baseline | 1 | 40.00 | 40.00 | 13.33 | 13.33 | 30.00 | yes | 30.0 (2 segments) |" in text
  assert "| baseline | 0 | 30.00 | 30.00 | 10.00 | 10.00 | 20.00 | yes | 10.0 |" in text
  assert "Runs: 3 finished, 16.7 min each on average (10.0-30.0)" in text
  assert "and every segment of the run that was interrupted and resumed." in text


def test_a_run_resumed_by_a_trainer_that_keeps_its_clock_counts_its_segments_from_its_log(tmp_path, monkeypatch):
  # The trainer carries the clock across a resume and cuts metrics.jsonl back to the checkpoint: only the
  # log the sweep keeps (run.log) says the run was interrupted, twice here.
  work = tmp_path / "work"
  _fake_run(work, 0, 0.3, 0.2, _kernels(True))
  (work / "config.json").write_text("{}")
  resumed = [loop.RESUMED_MESSAGE % (step, work) for step in (433, 883)]
  (work / "run.log").write_text(f"I1206 04:13:23.8 1 loop.py:305] {resumed[0]}\nother\nI1206 1 loop.py] {resumed[1]}\n")
  monkeypatch.setattr(report_files, "final_conv1_kernels", lambda workdir: None)
  run = sweep.Run("baseline", {}, 0, str(work))
  assert report_files.copy_finished([run], str(tmp_path / "report")) == 1
  copied = tmp_path / "report" / "runs" / "baseline" / "seed0"
  assert measures.resumed_from(str(copied)) == [433, 883]
  _perf(copied / "metrics.jsonl", [10.0, 20.0, 30.0])  # no restart of the clock
  baseline = next(a for a in arms.ARMS if a.name == "baseline")
  (loaded,) = measures.load_arm(str(tmp_path / "report"), baseline)
  assert (loaded["segments"], loaded["wall_time_s"]) == (3, 600.0)


def test_a_run_whose_clock_restarted_and_whose_log_names_the_resume_counts_it_once(tmp_path, monkeypatch):
  # A trainer before the clock was carried: the resume shows in metrics.jsonl (30 -> 5) and in run.log.
  work = tmp_path / "work"
  _fake_run(work, 0, 0.3, 0.2, _kernels(True))
  (work / "config.json").write_text("{}")
  _perf(work / "metrics.jsonl", [10.0, 20.0, 30.0, 5.0, 15.0])
  (work / "run.log").write_text(f"I1204 1 loop.py] {loop.RESUMED_MESSAGE % (433, work)}\n")
  monkeypatch.setattr(report_files, "final_conv1_kernels", lambda workdir: None)
  report_files.copy_finished([sweep.Run("baseline", {}, 0, str(work))], str(tmp_path / "report"))
  baseline = next(a for a in arms.ARMS if a.name == "baseline")
  (loaded,) = measures.load_arm(str(tmp_path / "report"), baseline)
  assert (loaded["segments"], loaded["wall_time_s"]) == (2, 630.0)  # 30 s, then the summary's 600


def test_a_run_that_never_resumed_gets_no_resumes_file(tmp_path, monkeypatch):
  work = tmp_path / "work"
  _fake_run(work, 0, 0.3, 0.2, _kernels(True))
  (work / "config.json").write_text("{}")
  (work / "run.log").write_text("I1206 loop.py] Saved the checkpoint at step 433.\n")
  monkeypatch.setattr(report_files, "final_conv1_kernels", lambda workdir: None)
  stale = tmp_path / "report" / "runs" / "baseline" / "seed0" / measures.RESUMES_FILE
  stale.parent.mkdir(parents=True)
  stale.write_text('{"resumed_from_steps": [5]}')  # from an earlier run in this folder, since started over
  report_files.copy_finished([sweep.Run("baseline", {}, 0, str(work))], str(tmp_path / "report"))
  assert not stale.exists()


def test_a_datasets_report_covers_only_the_arms_it_runs(tmp_path):
  _study(tmp_path, {"no_lrn": (1.9, 2.0, 2.1), "no_overlap": (0.9, 1.0, 1.1)}, base=(0.60, 0.62, 0.64))
  woof = arms.arms_of(WOOF)
  headline = report.write_report(str(tmp_path), woof, arms.CLAIMS, dataset=WOOF)
  text = (tmp_path / "README.md").read_text()
  assert text.startswith("# The paper's claims, measured on Imagewoof\n")
  assert (
    "**Partial results: 9 of 34 runs finished.**" in text
    and "`python -m experiments.study --dataset=imagewoof`" in text
  )
  claim_rows = [line.split(" | ")[0] for line in text.splitlines() if line[:4] in {f"| {n} " for n in range(1, 8)}]
  assert claim_rows[:4] == ["| 1", "| 2", "| 3", "| 4"] and "| 5" not in claim_rows
  assert headline.startswith("Of 4 of the paper's 7 claims, measured at a CPU scale (Imagewoof, 4 epochs, 9 of 34 runs")
  for absent in (
    "What dropout's cost",
    "no_lrn_lr_half",
    "no_dropout",
    "PCA lighting lowers",
    "random crops and flips",
  ):
    assert absent not in text, absent
  assert "9,025 training and 3,929 validation photos" in text and "Imagewoof2, 10 classes, 9,025 images" in text
  assert "the Imagenette study's `paper_init` and `paper_init_raw` arms" in text
  assert "## Replication on" not in text  # the second dataset's own report reads no replica
  assert "| leaderboard: ResNet family, 128 px | 80 | 87.8 |" in text
  assert _lines_run_into_a_table(text) == []


def test_a_dataset_without_finished_runs_gets_its_status_and_how_to_reproduce_it(tmp_path):
  headline = report.write_report(str(tmp_path), arms.arms_of(WOOF), arms.CLAIMS, dataset=WOOF)
  text = (tmp_path / "README.md").read_text()
  assert headline == "" and "**Partial results: 0 of 34 runs finished.**" in text
  assert "## Reproduce" in text and "--source=folder:~/imagewoof2" in text and "unpack it to ~/imagewoof2" in text
  assert "Which code made the runs is not recorded (no provenance.json here)." in text
  assert not (tmp_path / "curves.png").exists()


def test_the_replication_table_lists_the_findings_that_do_not_replicate_first(tmp_path):
  nette, woof = tmp_path / "study", tmp_path / "study_imagewoof"
  # Imagenette: LRN +2.0 [+1.75, +2.25]; pooling +1.0 [+0.75, +1.25]; one tower +0.1 [-0.15, +0.35].
  _study(nette, {"no_lrn": (1.9, 2.0, 2.1), "no_overlap": (0.9, 1.0, 1.1), "one_tower": (0.0, 0.1, 0.2)})
  # Imagewoof: LRN +2.0 [+1.50, +2.50] (inside); pooling -1.0 (the other way); one tower +0.2 [-0.05, +0.45]
  # (no effect on either, 0.2 inside Imagenette's interval).
  _study(
    woof,
    {"no_lrn": (1.8, 2.0, 2.2), "no_overlap": (-0.9, -1.0, -1.1), "one_tower": (0.1, 0.2, 0.3)},
    base=(0.60, 0.62, 0.64),
  )
  headline = report.write_report(str(nette), arms.ARMS, arms.CLAIMS, replicate_from=str(woof))
  text = (nette / "README.md").read_text()
  section = text.split("## Replication on Imagewoof\n\n", 1)[1].split("\n\n## ", 1)[0]
  rows = [line for line in section.splitlines() if line.startswith("| claim") or line.startswith("| towers")]
  rows += [line for line in section.splitlines() if line.startswith("| LRN as gain")]
  assert "12 of 34 runs in `../study_imagewoof/runs`" in section
  assert rows[0] == (
    "| claim 4: overlapping pooling (no_overlap - baseline) | +1.00 [+0.75, +1.25] | -1.00 [-1.25, -0.75] | "
    "+1.00 [+0.75, +1.25] | -1.00 [-1.25, -0.75] | no | no, below | does not replicate |"
  )
  assert "Reading:" not in section  # the one failure goes the other way: not a matter of size
  order = [line.split(" | ")[-1] for line in section.splitlines() if line.startswith("| ") and "finding" not in line]
  assert order == ["does not replicate |"] + ["too few seeds |"] * 3 + ["replicates |"] * 2
  assert (
    "| claim 3: LRN (no_lrn - baseline) | +2.00 [+1.75, +2.25] | +2.00 [+1.50, +2.50] | +2.00 [+1.75, +2.25] | "
    "+2.00 [+1.50, +2.50] | yes | yes | replicates |" in section
  )
  assert "| towers as width (one_tower - baseline) | +0.10 [-0.15, +0.35] | +0.20 [-0.05, +0.45] |" in section
  assert headline.endswith(
    "On Imagewoof, with 12 of its 34 runs, 2 of the 3 findings judged replicate (same direction, inside this "
    "study's interval); not: claim 4: overlapping pooling."
  )
  assert _lines_run_into_a_table(text) == []
  # The README's claims table carries each claim's Imagewoof Δ and verdict (pooling: -1.0 ± 4.303 x 0.1 / √3).
  loaded, _, replica = report.load_inputs(str(nette), arms.ARMS, NETTE, "", str(woof))
  block = prose.readme_block(arms.CLAIMS, loaded, replica)
  assert "| verdict | on Imagewoof |" in block
  assert "| 3 LRN (3.3) | +1.4 | +2.0 [+1.8, +2.2] points | confirmed | +2.0 [+1.5, +2.5], replicates |" in block
  assert (
    "| +1.0 [+0.8, +1.2] points | confirmed | -1.0 [-1.2, -0.8], does not replicate (the other direction) |" in block
  )
  assert "| 5 PCA lighting (4.1) |" in block and block.count(" | – |") == 3  # claims 5-7: not run there
  assert "| too few seeds | no run yet |" in block  # claim 2: declared on Imagewoof, none run
  # The README names only the failures its column leaves out: pooling's is in the column.
  assert block.endswith("On Imagewoof, with 12 of its 34 runs, 2 of the 3 findings judged replicate.")
  assert "| on Imagewoof |" not in prose.readme_block(arms.CLAIMS, loaded, None)


def test_the_replication_table_says_where_a_finding_outside_the_interval_lies(tmp_path):
  nette, woof = tmp_path / "study", tmp_path / "study_imagewoof"
  # Imagenette: LRN +2.0 [+1.75, +2.25]; pooling +1.0 [+0.75, +1.25]; one tower +1.0 [+0.75, +1.25].
  _study(nette, {"no_lrn": (1.9, 2.0, 2.1), "no_overlap": (0.9, 1.0, 1.1), "one_tower": (0.9, 1.0, 1.1)})
  # Imagewoof: LRN +3.0 ± 4.303 x 1 / √3 = [+0.52, +5.48] (above, holds 2.0); pooling +2.0 [+1.75, +2.25]
  # (above, does not hold 1.0); one tower +0.5 [+0.25, +0.75] (below, does not hold 1.0).
  _study(woof, {"no_lrn": (2.0, 3.0, 4.0), "no_overlap": (1.9, 2.0, 2.1), "one_tower": (0.4, 0.5, 0.6)})
  report.write_report(str(nette), arms.ARMS, arms.CLAIMS, replicate_from=str(woof))
  text = (nette / "README.md").read_text()
  section = text.split("## Replication on Imagewoof\n\n", 1)[1].split("\n\n## ", 1)[0]
  assert (
    "| +2.00 [+1.75, +2.25] | +3.00 [+0.52, +5.48] | +2.00 [+1.75, +2.25] | +3.00 [+0.52, +5.48] | yes | no, above | "
    "does not replicate |" in section
  )
  assert "| +1.00 [+0.75, +1.25] | +2.00 [+1.75, +2.25] |" in section and section.count("| yes | no, above |") == 2
  assert (
    "| +1.00 [+0.75, +1.25] | +0.50 [+0.25, +0.75] | +1.00 [+0.75, +1.25] | +0.50 [+0.25, +0.75] | yes | no, below |"
    in section
  )
  assert section.endswith(
    "Reading: 3 of the findings that do not replicate go the same way as on Imagenette and miss only its "
    "interval, 2 of them above it (a larger Δ, positive being the paper's direction); 1 of these 3 Imagewoof "
    "intervals still hold Imagenette's mean, where Imagewoof's seeds cannot tell a larger effect from the same one."
  )
  # The README's claims column says the same: claim 3's Imagewoof mean lies above Imagenette's interval.
  loaded, _, replica = report.load_inputs(str(nette), arms.ARMS, arms.DATASETS["imagenette"], "", str(woof))
  block = prose.readme_block(arms.CLAIMS, loaded, replica)
  assert "| 3 LRN (3.3) | +1.4 | +2.0 [+1.8, +2.2] points | confirmed | +3.0 [+0.5, +5.5], does not replicate " in block
  assert "+3.0 [+0.5, +5.5], does not replicate (above the interval here) |" in block


def test_a_finding_that_does_not_replicate_says_which_test_it_fails():
  # Imagenette +2.0 [+1.75, +2.25] (0.1 x 4.303 / √3 = 0.25 either side), a detected effect.
  detected = effects.t_interval([1.9, 2.0, 2.1])
  assert replication.why_not(detected, effects.t_interval([2.9, 3.0, 3.1])) == "above the interval here"
  assert replication.why_not(detected, effects.t_interval([0.9, 1.0, 1.1])) == "below the interval here"
  assert replication.why_not(detected, effects.t_interval([-2.1, -2.0, -1.9])) == "the other direction"
  # No effect detected on Imagenette (0.0 [-0.25, +0.25]), one detected on Imagewoof.
  none = effects.t_interval([-0.1, 0.0, 0.1])
  assert replication.why_not(none, effects.t_interval([0.9, 1.0, 1.1])) == "an effect where none was detected here"


def test_without_imagewoof_runs_the_replication_section_is_one_line(tmp_path):
  _study(tmp_path / "study", {})
  os.makedirs(tmp_path / "study_imagewoof")
  headline = report.write_report(
    str(tmp_path / "study"), arms.ARMS, arms.CLAIMS, replicate_from=str(tmp_path / "study_imagewoof")
  )
  text = (tmp_path / "study" / "README.md").read_text()
  assert "## Replication on Imagewoof\n\nNo Imagewoof run has finished yet (`../study_imagewoof/runs`).\n\n##" in text
  assert "Imagewoof" not in headline


def test_the_reproduce_section_says_which_commit_made_which_runs_and_how_many_finished(tmp_path):
  _study(tmp_path, {"lrn_k1": (1.0, 1.0)}, base=(0.30, 0.40))
  provenance = {
    "machine": {"cores": 2, "python": "3.11.7"},
    "workdir": "~/runs/x",
    "made_by": [
      {
        "commit": "aaaaaaa",
        "command": "python -m experiments.study --workdir=~/runs/x",
        "runs": {"baseline": [0, 1, 2]},
      },
      {"commit": "bbbbbbb", "command": "python -m experiments.study", "runs": {"lrn_k1": [0, 2, 3, 4], "tanh": [5]}},
    ],
  }
  (tmp_path / "provenance.json").write_text(json.dumps(provenance))
  loaded = measures.load_all(str(tmp_path), arms.ARMS)
  lines = reproduce.section(str(tmp_path), NETTE, arms.ARMS, loaded, compare_to="experiments/results/study_15ep")
  assert (
    "- Machine of the runs: 2-core CPU, Python 3.11.7, jax 0, device `cpu` x1 (jax and the device from the runs' "
    "summary.json)." in lines
  )
  assert "| aaaaaaa | `python -m experiments.study --workdir=~/runs/x` | baseline 0-2 (2 of 3) |" in lines
  assert "| bbbbbbb | `python -m experiments.study` | lrn_k1 0, 2-4 (1 of 4); tanh 5 (0 of 1) |" in lines
  command = (
    "`python -m experiments.study --report_only --workdir=~/runs/x --compare_to=experiments/results/study_15ep "
    "--readme=README.md`"
  )
  assert any(command in line for line in lines)
  assert any(
    "--source=tfds:imagenette/full-size-v2 --download" in line and "--data_dir=~/alexnet_data" in line for line in lines
  )


def test_the_transfer_section_gives_the_baselines_accuracy_beside_the_leaderboard_and_the_conv1_maps(tmp_path):
  assert transfer.conv1_side(67) == 15 and transfer.conv1_side(227) == 55
  _study(tmp_path, {})
  loaded = measures.load_all(str(tmp_path), arms.ARMS)
  lines = transfer.section(loaded, NETTE.data)
  # Errors 30, 40, 50: accuracies 70, 60, 50.
  assert "| this study's baseline: AlexNet x0.25, 67 px crops, 10 crops | 4 | 60.00 (50.0-70.0) |" in lines
  assert "| leaderboard: ResNet family, 128 px | 5 | 87.4 |" in lines
  assert any("give 15x15 maps on a 67 px crop where the paper's 227 px give 55x55" in line for line in lines)


def test_each_arms_error_table_gives_the_10_crop_and_the_centre_error(tmp_path):
  _study(tmp_path, {"no_lrn": (2.0, 2.0, 2.0)})
  loaded = measures.load_all(str(tmp_path), arms.ARMS)
  lines = tables.arm_errors_section(arms.ARMS, loaded)
  # The made-up runs' top-5 errors are a third of their top-1.
  assert (
    "| baseline | 3 of 3 | 40.00 (30.0-50.0) | 40.00 (30.0-50.0) | 13.33 (10.0-16.7) | 13.33 (10.0-16.7) |" in lines
  )
  assert "| no_lrn | 3 of 3 | 42.00 (32.0-52.0) | 42.00 (32.0-52.0) | 14.00 (10.7-17.3) | 14.00 (10.7-17.3) |" in lines
  assert not any(line.startswith("| tanh |") for line in lines)  # no finished run: no row


def test_the_headline_reads_the_k1_control_once_it_has_two_seeds(tmp_path):
  # No LRN +1.9, +2.0, +2.1 points; LRN with k = 1 +0.1, -0.1, +0.3 (+0.10 [-0.40, +0.60]: not worse), so
  # against no LRN -1.8, -2.1, -1.8 (-1.90 [-2.33, -1.47]: better).
  _study(tmp_path, {"no_lrn": (1.9, 2.0, 2.1), "lrn_k1": (0.1, -0.1, 0.3)})
  headline = report.write_report(str(tmp_path), arms.ARMS, arms.CLAIMS)
  assert "The k = 1 control: LRN with k = 1 is detectably better than no LRN (-1.90 [-2.33, -1.47])" in headline
  assert headline.count("the gain reading fails") == 1
  text = (tmp_path / "README.md").read_text()
  assert "The controls: LRN: " in text and "The k = 1 control: LRN with k = 1 is detectably better" in text
  _study(tmp_path / "one", {"no_lrn": (1.9, 2.0, 2.1), "lrn_k1": (0.1,)})  # one seed: no reading in the headline
  assert "k = 1" not in report.write_report(str(tmp_path / "one"), arms.ARMS, arms.CLAIMS)


def test_the_readme_findings_come_from_the_reports_runs_and_are_emptied_before_any(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text(f"intro\n{report_files.README_BEGIN}\nold findings\n{report_files.README_END}\nrest\n")
  report_dir = tmp_path / "report"
  report.write_report(str(report_dir), arms.ARMS, arms.CLAIMS, readme=str(readme))
  assert readme.read_text() == f"intro\n{report_files.README_BEGIN}\n\n{report_files.README_END}\nrest\n"
  # LRN's seed-paired differences 1.9, 2.0, 2.1 points: mean 2.0, sd 0.1, t(0.975, 2) = 4.303, so ±0.25.
  _study(report_dir, {"no_lrn": (1.9, 2.0, 2.1)})
  report.write_report(str(report_dir), arms.ARMS, arms.CLAIMS, readme=str(readme))
  text = readme.read_text()
  assert text.startswith(f"intro\n{report_files.README_BEGIN}\n")
  assert text.endswith(f"{report_files.README_END}\nrest\n")
  assert "| 3 LRN (3.3) | +1.4 | +2.0 [+1.8, +2.2] points |" in text


def machine_blind(report_text: str) -> str:
  """A report without the line naming the machine that wrote it (recipe.setup_section)."""
  return re.sub(r"(?m)^- Report written on: .*$", "- Report written on: (machine)", report_text)


def test_the_committed_reports_are_what_the_code_writes_from_the_committed_runs(tmp_path, monkeypatch):
  """Both reports, rewritten from copies of the committed runs (laid out as in the repository, so their
  relative links agree; the commands they quote name the copies' folder), equal the committed ones but for
  the machine that wrote them: a change to the report's code is committed with the reports it writes
  (python -m experiments.study [--dataset=imagewoof] --report_only ...)."""
  monkeypatch.setattr(recipe.platform, "platform", lambda: "another machine")  # as CI's may be
  results = os.path.join(os.path.dirname(__file__), "..", "experiments", "results")
  for name in ("study", "study_15ep", "study_imagewoof"):
    shutil.copytree(os.path.join(results, name), tmp_path / name)
  report.write_report(str(tmp_path / "study_imagewoof"), arms.arms_of(WOOF), arms.CLAIMS, dataset=WOOF)
  report.write_report(
    str(tmp_path / "study"),
    arms.ARMS,
    arms.CLAIMS,
    compare_to=str(tmp_path / "study_15ep"),
    replicate_from=str(tmp_path / "study_imagewoof"),
  )
  for name in ("study_imagewoof", "study"):
    with open(os.path.join(results, name, "README.md")) as f:
      committed = f.read()
    written = (tmp_path / name / "README.md").read_text().replace(str(tmp_path), "experiments/results")
    assert machine_blind(written) == machine_blind(committed), f"experiments/results/{name} is stale"


def test_the_readme_points_only_at_the_controls_that_have_runs():
  assert prose.controls_pointer({}) == ""
  assert prose.controls_pointer({"one_tower": ["a run"], "lrn_gain_only": []}) == (
    "The report's controls ask whether the towers' edge is their width."
  )
  both = prose.controls_pointer({"one_tower": ["a run"], "lrn_gain_only": ["a run"]})
  assert (
    both == "The report's controls ask what LRN's effect is made of (its gain, k = 1) and whether the towers' edge is "
    "their width."
  )
