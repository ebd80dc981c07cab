"""MLflow tracking: the client adapter (client.py) and what of a run is logged where (run_log.py)."""
