"""softmax_exp's Hydra launcher plugin: Hydra's Ray launcher, whose Ctrl-C stops the sweep (`ray_cluster`)."""
