"""Runnable experiments (``python -m distral_tf.experiments.<name>``)."""
