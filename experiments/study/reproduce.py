"""The study report's Reproduce section: the machine, the commands, and which code made which runs.

The runs record their device and jax version (summary.json) but not the commit whose code made them nor
the machine's cores, so those facts live in `provenance.json` beside the runs in the report folder, as
data the section reads: {"machine": {"cores", "python"}, "workdir", "made_by": [{"commit", "command",
"runs": {arm: [seeds]} or "all"}]}. The prepare command comes from the dataset's config
(`dataset.prepare_args`), so it is the one a new run would need.
"""

import json
import os
from typing import Dict, List, Optional

from alexnet_jax import configlib, paths
from experiments.study import arms as arms_lib

PROVENANCE = "provenance.json"


def read_provenance(report_dir: str) -> Optional[dict]:
  """The report folder's provenance.json, or None where it has none."""
  path = os.path.join(report_dir, PROVENANCE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def prepare_command(dataset: arms_lib.Dataset) -> str:
  """`python -m alexnet_jax.data.prepare` with the dataset config's prepare_args and data_dir."""
  config = configlib.load_config(os.path.join(paths.REPOSITORY, dataset.config))
  return f"python -m alexnet_jax.data.prepare {config.dataset.prepare_args} --data_dir={config.dataset.data_dir}"


def seed_ranges(seeds: List[int]) -> str:
  """'0-4', '3-5', '0, 2' or '5': sorted seeds, consecutive ones as a range."""
  seeds, parts, start = sorted(seeds), [], None
  for i, seed in enumerate(seeds):
    start = seed if start is None else start
    if i + 1 == len(seeds) or seeds[i + 1] != seed + 1:
      parts.append(str(seed) if start == seed else f"{start}-{seed}")
      start = None
  return ", ".join(parts)


def group_runs(group: dict, arms) -> Dict[str, List[int]]:
  """{arm: seeds} of a provenance group; 'all' stands for every planned run of `arms`."""
  if group["runs"] == "all":
    return {a.name: list(range(a.seeds)) for a in arms}
  return {name: list(seeds) for name, seeds in group["runs"].items()}


def made_by_lines(provenance: dict, arms, loaded) -> List[str]:
  """The table of which commit's code made which runs, with how many of them have finished."""
  finished = {(name, r["seed"]) for name, results in loaded.items() for r in results}
  lines = ["| code (commit) | command, from a worktree of the commit | runs: arm seeds (finished of planned) |"]
  lines.append("|---|---|---|")
  for group in provenance["made_by"]:
    cells = []
    for name, seeds in group_runs(group, arms).items():
      done = sum((name, s) in finished for s in seeds)
      cells.append(f"{name} {seed_ranges(seeds)} ({done} of {len(seeds)})")
    lines.append(f"| {group['commit']} | `{group['command']}` | {'; '.join(cells)} |")
  return lines


def machine_line(provenance: Optional[dict], loaded) -> str:
  """The machine of the runs: cores and Python from provenance.json, device and jax from the summaries."""
  summaries = [r["summary"] for results in loaded.values() for r in results]
  jax_versions = sorted({s["jax_version"] for s in summaries})
  devices = sorted({f"`{s['device_kind']}` x{s['devices']}" for s in summaries})
  machine = (provenance or {}).get("machine", {})
  parts = [
    f"{machine['cores']}-core CPU" if "cores" in machine else "",
    f"Python {machine['python']}" if "python" in machine else "",
  ]
  parts += [f"jax {', '.join(jax_versions)}" if jax_versions else "", f"device {', '.join(devices)}" if devices else ""]
  said = ", ".join(p for p in parts if p)
  return f"- Machine of the runs: {said or 'not recorded'} (jax and the device from the runs' summary.json)."


def study_workdir(report_dir: str, dataset: arms_lib.Dataset) -> str:
  """The --workdir the report's runs were made in (provenance.json), else the dataset's default."""
  return (read_provenance(report_dir) or {}).get("workdir", dataset.workdir)


def section(report_dir: str, dataset: arms_lib.Dataset, arms, loaded, compare_to: str = "") -> List[str]:
  """The Reproduce section.

  Args:
    report_dir: the report folder (its provenance.json is read).
    dataset: the study's dataset.
    arms: its arms (arms.arms_of).
    loaded: {arm name: its finished runs} (measures.load_all).
    compare_to: the --compare_to folder the report was written with, or "".

  Returns:
    The section's Markdown lines.
  """
  provenance = read_provenance(report_dir)
  workdir = study_workdir(report_dir, dataset)
  chosen = "" if dataset.name == "imagenette" else f" --dataset={dataset.name}"
  report = f"python -m experiments.study{chosen} --report_only --workdir={workdir}"
  report += (f" --compare_to={compare_to}" if compare_to else "") + (" --readme=README.md" if not chosen else "")
  data = dataset.data
  make = f"{data.fetch}, then run" if data.fetch else "run"
  lines = [
    "## Reproduce",
    "",
    machine_line(provenance, loaded),
    f"- Data: {data.title} ({data.content}: {data.train_images:,} training and {data.val_images:,} validation "
    f"photos) at 128 px, {arms_lib.PREPARATION.format(source=data.source)} To make a copy, {make} "
    f"`{prepare_command(dataset)}` (the "
    f"`dataset.prepare_args` of `{dataset.config}`).",
    f"- Runs: `python -m experiments.study{chosen} --workdir={workdir} --parallel=2` (finished runs are "
    f"skipped, an interrupted one resumes from its last checkpoint; two at once keep both cores busy).",
    f"- This report, from the finished runs (those of the workdir are copied into `runs/` first): `{report}`.",
    "",
  ]
  if provenance is None:
    return lines + [f"Which code made the runs is not recorded (no {PROVENANCE} here).", ""]
  return lines + [
    f"Which code made the runs ({PROVENANCE}): each command ran from a worktree of its commit (`git worktree "
    f"add DIR COMMIT`, then the command in DIR with `PYTHONPATH=DIR`), so that edits to the tree could not "
    f"change a study in progress.",
    "",
    *made_by_lines(provenance, arms, loaded),
    "",
  ]
