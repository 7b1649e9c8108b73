"""softmax_exp's Hydra launcher plugin: `hydra/launcher=vectorized`."""
