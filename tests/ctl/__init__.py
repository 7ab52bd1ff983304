"""ssd-ctl as a person runs it (a package, so that its conftest does not shadow tests/conftest.py)."""
