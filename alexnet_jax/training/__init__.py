"""Training: the data-parallel steps (steps), the optimiser (optim), the loop and its pieces (loop,
checkpointing, metrics_io) and `train_and_evaluate` (train)."""
