"""softmax_exp's Hydra launcher plugin: each job of a sweep one Ray task, and Ctrl-C cancels them (`ray_cluster`)."""
