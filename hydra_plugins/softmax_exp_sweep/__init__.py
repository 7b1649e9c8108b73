"""softmax_exp's Hydra sweeper plugin: `hydra/sweeper=grid`, the suite's default, which can resume a sweep."""
