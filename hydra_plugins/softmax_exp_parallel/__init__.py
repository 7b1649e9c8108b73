"""softmax_exp's Hydra launcher plugin: `hydra/launcher=parallel` (conf: `hydra/launcher=two_at_a_time`)."""
