"""Training a run: the trainer composed of its parts (run directory, setup, worker backends, summaries), the
actors and learners, the run's counters and checkpoints, and the Ray wiring of the same parts."""
