"""The three A3C baselines of the paper's Table 1: a3c, a3c_multitask, a3c_2col."""
