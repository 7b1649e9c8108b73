"""What softmax_exp's launcher plugins share (no launcher of its own)."""
