"""Shared sipp scenarios and a helper to run them (see runner.py)."""
