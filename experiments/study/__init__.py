"""The reproduction study: the paper's claims measured by seed-paired ablations, and its report.

`python -m experiments.study` runs it (__main__); arms declares what runs, runner copies finished runs and
rewrites the README's findings, measures computes every statistic, and report writes the report from the
sections of tables, recipe, prose, controls, figure3, convergence and budget (figures draws its images).
`python -m experiments.study.geometry` timed the candidate geometries.
"""
