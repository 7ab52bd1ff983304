"""Kernel start errors as Jupyter shows them: the fixing command on its own line, one text everywhere."""

from __future__ import annotations

from tornado import web

from ssd.errors import ErrorCode, RemoteError, SSDError, Unreachable
from ssd.kernelerrors import KernelStartError, explain, lay_out


def test_a_command_in_a_message_goes_to_a_line_of_its_own() -> None:
    """The hosts' messages name their fix inline; laid out, the command stands alone, indented."""
    assert lay_out("no environment 'x' was found for this user (see: ssd-ctl envs labpc)") == (
        "no environment 'x' was found for this user. See:\n    ssd-ctl envs labpc"
    )
    assert lay_out("x has no ipykernel; install it with: ssd-ctl env install labpc x ipykernel") == (
        "x has no ipykernel; install it with:\n    ssd-ctl env install labpc x ipykernel"
    )
    assert lay_out("you run 4 kernels here (stop one: ssd-ctl stop labpc KERNEL)") == (
        "you run 4 kernels here. Stop one:\n    ssd-ctl stop labpc KERNEL"
    )
    assert lay_out("nothing to run here") == "nothing to run here"


def test_the_error_is_an_ssd_error_and_an_http_error_with_the_same_text() -> None:
    """Jupyter Server shows an HTTPError's log_message; jupyter console prints str(); both are ssd's text,
    and a '%' in it survives tornado's formatting."""
    error = explain(
        Unreachable("cannot connect to labpc:9470: no answer within 5s (100% lost)"), host="labpc", env="/e/ana"
    )
    assert isinstance(error, SSDError)
    assert isinstance(error, web.HTTPError)
    assert (error.status_code, error.reason, error.code) == (500, "ssd unreachable", "unreachable")
    assert str(error).splitlines() == [
        "ssd could not start a kernel on labpc (environment ana).",
        "Cannot connect to labpc:9470: no answer within 5s (100% lost)",
        "Is the ssd daemon running there? Check with:",
        "    ssd-ctl info labpc",
    ]
    assert error.get_message() == str(error)
    assert explain(error, host="other", env="x") is error  # already explained: unchanged


def test_an_env_not_found_names_kernelspec_sync_rather_than_the_hosts_hint() -> None:
    """For a Jupyter user the fix is to update the kernelspecs, not the host's ``ssd-ctl envs``."""
    error = explain(
        SSDError(
            "no environment '/e/ana' was found for this user (see: ssd-ctl envs labpc)", code=ErrorCode.ENV_NOT_FOUND
        ),
        host="labpc",
        env="/e/ana",
        doing="restart a kernel",
    )
    assert str(error).splitlines()[1:] == [
        "No environment '/e/ana' was found for this user.",
        "Is it gone? Update the kernelspecs with:",
        "    ssd-ctl kernelspec sync labpc",
    ]
    assert KernelStartError("x", code="Not A Code!").reason is None  # never free text in a status line


def test_a_hosts_words_stay_on_one_line() -> None:
    """A host's message cannot add lines to Jupyter's log or the dialog (a forged log record, say)."""
    forged = "refused\n[I 2026-01-01 00:00:00.000 ServerApp] Kernel started\r\x1b[2K"
    lines = str(explain(RemoteError(ErrorCode.KERNEL_START_FAILED, forged), host="labpc", env="/e/ana")).splitlines()
    assert lines == ["ssd could not start a kernel on labpc (environment ana).", lines[1]]
    assert lines[1].startswith("Refused [I 2026-01-01")
    assert all(c.isprintable() for c in lines[1])
