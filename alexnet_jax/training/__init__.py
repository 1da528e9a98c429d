"""Training: the data-parallel steps (steps), the optimiser (optim), the loop's pieces (loop, checkpointing,
metrics_io), a run's checks and construction (run_setup), its files (run_files) and `train_and_evaluate`
(train)."""
