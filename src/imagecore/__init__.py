"""imagecore: the domain of a job-based image processing service (pure, no I/O)."""
