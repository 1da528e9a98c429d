"""The study report's convergence section: whether each run, and each claim's effect, still moved at the
end of the budget.

A fixed cosine budget ends every run on small steps, so flatness is read off a least-squares line over
the last 20% of the epochs (measures.late_fit) rather than two single evaluations, and beside it whether
the claims' seed-paired Δ still moved: a run that is not flat matters to a verdict only if the Δ moves.
"""

import math
from typing import List

import numpy as np

from experiments.study import formatting as fmt
from experiments.study import measures


def convergence_section(arms, claims, loaded) -> List[str]:
  """The convergence section: each run's late change, how many runs are flat, and whether the effects move.

  Args:
    arms: the study's arms, in table order.
    claims: the paper's claims (arms.CLAIMS).
    loaded: {arm name: its finished runs} (measures.load_all).

  Returns:
    The section's Markdown lines.
  """
  lines = [
    "## Convergence",
    "",
    f"Change of the validation top-1 error (centre, points) over the last 20% of each run's epochs, read "
    f"off the least-squares line through every evaluation in that window; a run counts as flat (converged) "
    f"when it moved less than {measures.CONVERGED_POINTS:g} point.",
    "",
    "| arm | change per seed | flat |",
    "|---|---|---|",
  ]
  for arm in arms:
    results = sorted(loaded[arm.name], key=lambda r: r["seed"])
    if results:
      cells = [
        fmt.signed_or_dash(measures.late_change(r["curve"])) + (" (did not train)" if r["failed"] else "")
        for r in results
      ]
      flat, trained = measures.flat_counts({arm.name: results})
      lines.append(f"| {arm.name} | {', '.join(cells)} | {flat} of {trained} trained |")
  flat, trained = measures.flat_counts(loaded)
  by_ends, _ = measures.flat_counts(loaded, measures.endpoint_change)
  scatters = [measures.late_fit(r["curve"])[1] for rs in loaded.values() for r in rs if not r["failed"]]
  scatters = [s for s in scatters if math.isfinite(s)]  # a run with too few evaluations has no scatter
  scatter = float(np.median(scatters)) if scatters else math.nan
  lines += [
    "",
    f"{flat} of the {trained} runs that trained are flat by this measure; {by_ends} by the difference of two "
    f"single evaluations (the last, and the one at 80% of the epochs), which the evaluations' scatter about "
    f"the line (standard deviation, median over the runs: {scatter:.2f} points) moves on its own.",
    "",
  ]
  lines += effect_drift_lines(claims, loaded)
  caption = (
    "validation error per epoch of every arm: mean and range over the seeds that trained, each run that "
    "did not train dotted"
  )
  return lines + [f"![{caption}](curves.png)", ""]


def effect_drift_lines(claims, loaded, fraction: float = 0.8) -> List[str]:
  """Whether the claims' effects still moved late in the runs: the seed-paired Δ of the validation top-1
  error (centre) at `fraction` of the epochs and at the end. Runs that are not flat matter to a claim
  only where the difference between the arms still moves."""
  lines = [
    f"Do the effects still move? Δ validation top-1 error (centre, points), seed-paired, at "
    f"{fraction:.0%} of the epochs and at the end:",
    "",
    "| claim | arm | Δ at " + f"{fraction:.0%}" + " | Δ at the end | moved |",
    "|---|---|---|---|---|",
  ]
  moves = {}
  for claim in claims:
    at = lambda f: lambda r: 100 * measures.at_fraction(r["curve"], f)
    early, end = (measures.paired_delta(loaded["baseline"], loaded[claim.arm], at(f)) for f in (fraction, 1.0))
    if end.n:
      moves[claim.number] = end.mean - early.mean
      lines.append(
        f"| {claim.number} | {claim.arm} | {fmt.fmt_interval(early)} | {fmt.fmt_interval(end)} | "
        f"{moves[claim.number]:+.2f} |"
      )
  own = [abs(measures.late_change(r["curve"], 1 - fraction)) for rs in loaded.values() for r in rs if not r["failed"]]
  if moves and own:
    largest = max(moves, key=lambda k: abs(moves[k]))
    still = np.mean(own) >= measures.CONVERGED_POINTS
    lines += [
      "",
      f"Over the last {1 - fraction:.0%} of the epochs the claims' mean Δ moved by at most "
      f"{abs(moves[largest]):.2f} points (claim {largest}), the trained runs' own errors by "
      f"{np.mean(own):.2f} points on average"
      + (
        ": the runs were still improving at the end, and the verdicts are those of this budget, not of converged runs."
        if still
        else "."
      ),
    ]
  return lines + [""]
