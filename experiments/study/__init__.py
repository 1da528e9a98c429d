"""The reproduction study: the paper's claims measured by seed-paired ablations, and its report.

`python -m experiments.study` runs it (__main__); arms declares what runs on which dataset, report_files copies
finished runs and rewrites the README's findings, measures computes every statistic and formatting writes
them; report writes the report from the sections of tables, recipe, transfer, prose, controls and lrn,
replication, figure3, convergence, budget and reproduce (figures draws its images).
`python -m experiments.study.geometry` timed the candidate geometries.
"""
