"""Training: the loop, the shared wall clock, QAT switching, SWA/EMA, checkpoints, the step table."""
