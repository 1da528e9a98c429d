"""The benchmark suite (run it with `python -m experiments.benchmark`; its --help lists the sections)."""
