"""The inbox: every callback of every provider, written raw before anything else."""
