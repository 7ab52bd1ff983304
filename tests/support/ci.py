"""Where the tests run: under CI (``CI=true``) a test that needs root must run, never skip."""

from __future__ import annotations

import os

import pytest

__all__ = ["IN_CI", "require_root"]

IN_CI = os.environ.get("CI") == "true"


def require_root() -> None:
    """Skip when not root, except under CI where a skip of a root test is a failure."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("this test needs root and CI=true: it must run, not skip")
        pytest.skip("needs root")
