"""Tests against a real one-node Slurm (a package, so that its conftest does not shadow tests/conftest.py)."""
