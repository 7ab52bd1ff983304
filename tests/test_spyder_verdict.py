"""The Spyder plugin's verdict on an environment (no Qt needed): it follows ssd's one compatibility table."""

from __future__ import annotations

from ssd.envs import compat
from ssd.errors import ErrorCode, RemoteError, ServerKeyMismatch, Unreachable
from ssd.spyder.advice import advice
from ssd.spyder.verdict import series_of, verdict

READY = {"python": "3.11.2", "spyder_kernels": "3.1.6", "ipykernel": "6.31.0", "ipython": "9.17.1"}


def test_an_env_with_the_right_spyder_kernels_serves_this_spyder() -> None:
    """spyder-kernels 3.1.x serves Spyder 6.1.x, as the table says."""
    assert verdict(READY, "6.1.8").ok


IPYTHONS = ("9.17.1", "8.30.0", "7.34.0", "7.16.0")
IPYKERNELS = ("6.31.0", "5.5.6")


def test_every_row_of_the_table_is_followed() -> None:
    """For each Spyder series of the table, its own range passes (with an IPython and ipykernel it allows) and
    the next series' range fails, naming what to install."""
    for row, newer in zip(compat.COMPATIBILITY[1:], compat.COMPATIBILITY, strict=False):
        spyder = row.spyder.replace(".x", ".0")
        kernels = ".".join(map(str, row.minimum))
        envs = [
            {**READY, "spyder_kernels": kernels, "ipython": ipython, "ipykernel": ipykernel}
            for ipython in IPYTHONS
            for ipykernel in IPYKERNELS
        ]
        env = next((e for e in envs if verdict(e, spyder).ok), None)
        assert env is not None, f"no IPython/ipykernel pair serves {row}"
        other = verdict(env, newer.spyder.replace(".x", ".0"))
        assert not other.ok
        assert other.fix == " ".join(compat.install_specs(newer.spyder.replace(".x", ".0")) or [])


def test_missing_or_broken_environments_say_why_and_what_to_install() -> None:
    """No spyder-kernels, a known-broken IPython, no Python: not ok, with what the table says to install."""
    bare = verdict({"python": "3.11.2", "spyder_kernels": None}, "6.1.8")
    assert not bare.ok
    assert bare.reason == "no spyder-kernels for Spyder 6.1.x"
    assert bare.fix == "spyder-kernels>=3.1.0,<3.2.0 ipython<9.18"
    broken = verdict({**READY, "ipython": "9.18.1", "spyder_ready": False}, "6.1.8")
    assert not broken.ok
    assert broken.reason.startswith("IPython 9.18.1 breaks spyder-kernels 3.1.6 (cannot import name 'linux_theme'")
    assert broken.fix == "ipython<9.18"
    assert verdict({**READY, "ipython": "9.17.1"}, "6.1.8").ok
    no_python = verdict({**READY, "python": None}, "6.1.8")
    assert (no_python.ok, no_python.reason) == (False, "no Python found in it")
    unknown = verdict(READY, "99.0.0")
    assert not unknown.ok
    assert "not in ssd's compatibility table" in unknown.reason
    assert series_of("6.1.8") == "6.1.x"


def test_advice_names_the_fix() -> None:
    """Throttled: when to retry; unreachable: check ssd there; changed key: the hard error stays."""
    throttled = RemoteError(ErrorCode.LOGIN_THROTTLED, "too many failures", {"retry_after": 4.2})
    assert "wait 4 s" in advice(throttled)
    assert "Is ssd running" in advice(Unreachable("cannot reach x"), "x")
    assert "Nothing was sent" in advice(ServerKeyMismatch("SERVER KEY CHANGED for x"), "x")
