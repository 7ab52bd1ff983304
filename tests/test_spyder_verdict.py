"""The Spyder plugin's verdict on an environment (no Qt needed): it follows ssd's one compatibility table."""

from __future__ import annotations

from ssd.envs import compat
from ssd.errors import ErrorCode, RemoteError, ServerKeyMismatch, Unreachable
from ssd.spyder.advice import advice
from ssd.spyder.verdict import series_of, verdict

READY = {"python": "3.11.2", "spyder_kernels": "3.1.6", "ipykernel": "6.31.0", "spyder_ready": True}


def test_an_env_with_the_right_spyder_kernels_serves_this_spyder() -> None:
    """spyder-kernels 3.1.x serves Spyder 6.1.x, as the table says."""
    assert verdict(READY, "6.1.8").ok


def test_every_row_of_the_table_is_followed() -> None:
    """For each Spyder series of the table, its own range passes and the next series' range fails."""
    for row, newer in zip(compat.COMPATIBILITY[1:], compat.COMPATIBILITY, strict=False):
        env = {**READY, "spyder_kernels": ".".join(map(str, row.minimum))}
        spyder = row.spyder.replace(".x", ".0")
        assert verdict(env, spyder).ok, row
        other = verdict(env, newer.spyder.replace(".x", ".0"))
        assert not other.ok
        assert other.fix == compat.kernels_spec_for(newer.spyder.replace(".x", ".0"))


def test_missing_or_unready_environments_say_why_and_what_to_install() -> None:
    """No spyder-kernels, or the host says it cannot serve Spyder: not ok, with the spec that fixes it."""
    bare = verdict({"python": "3.11.2", "spyder_kernels": None}, "6.1.8")
    assert not bare.ok
    assert bare.reason == "spyder-kernels is not installed"
    assert bare.fix == "spyder-kernels>=3.1.0,<3.2.0"
    unready = verdict({**READY, "spyder_ready": False}, "6.1.8")
    assert not unready.ok
    assert series_of("6.1.8") == "6.1.x"


def test_advice_names_the_fix() -> None:
    """Throttled: when to retry; unreachable: check ssd there; changed key: the hard error stays."""
    throttled = RemoteError(ErrorCode.LOGIN_THROTTLED, "too many failures", {"retry_after": 4.2})
    assert "wait 4 s" in advice(throttled)
    assert "Is ssd running" in advice(Unreachable("cannot reach x"), "x")
    assert "Nothing was sent" in advice(ServerKeyMismatch("SERVER KEY CHANGED for x"), "x")
