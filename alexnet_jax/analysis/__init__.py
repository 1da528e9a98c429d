"""Analysis of many runs: ablate (sweeps and their tables), effects (seed-paired intervals), kernels (conv1
kernel statistics)."""
