"""`yitang loadtest`: headless participants against a Yitang server (see runner.py)."""
