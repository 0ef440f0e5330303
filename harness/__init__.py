"""clip3d-bench harness: Sacred experiments, data, metrics and the run store."""
