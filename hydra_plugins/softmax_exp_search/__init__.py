"""softmax_exp's Hydra sweeper plugin for searches: `hydra/sweeper=search` (Optuna's ask/tell, batches in lock-step)."""
