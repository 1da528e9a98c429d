"""Analysis of many runs: sweep (launches a grid of runs), ablate (the sweep command and its tables), effects
(seed-paired intervals), kernels (conv1 kernel statistics), plots."""
