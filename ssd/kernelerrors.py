"""Kernel start errors as Jupyter shows them: a short first sentence, the command that fixes it on its own line.

Jupyter Server answers ``POST /api/kernels`` with an exception's text only
when it is a tornado ``HTTPError`` (its API handlers hide every other one as
"Unhandled error"); JupyterLab's start-error dialog shows the text in a
``<pre>``, which does not wrap, so a command at the end of a long line is cut
off. ``KernelStartError`` is both an ``SSDError`` and an ``HTTPError``:
tornado is a dependency of jupyter_client, so ``jupyter console`` (without
Jupyter Server) gets the same exception, whose ``str`` is the message alone.
"""

from __future__ import annotations

import re

from tornado import web

from ssd.errors import ErrorCode, RemoteError, SSDError

__all__ = ["KernelStartError", "explain", "lay_out"]

# An ssd-ctl command inside a message, up to the end of its clause.
_COMMAND = re.compile(r"ssd-ctl [^();\n]*[^();\n\s.,]")
_ASIDE = re.compile(r"\s*\((\w[\w ]*):$")  # "(see:" before a command
_CODE = re.compile(r"[a-z][a-z_]{0,40}")
_FIXES: dict[str, tuple[str, str]] = {
    ErrorCode.UNREACHABLE: ("Is the ssd daemon running there? Check with:", "ssd-ctl info {host}"),
    ErrorCode.TIMEOUT: ("The host did not answer in time. Check with:", "ssd-ctl info {host}"),
    ErrorCode.ENV_NOT_FOUND: ("Is it gone? Update the kernelspecs with:", "ssd-ctl kernelspec sync {host}"),
}


class KernelStartError(SSDError, web.HTTPError):
    """A kernel that ssd could not start (or restart), with the fix; Jupyter Server answers it as a 500."""

    def __init__(self, message: str, *, code: str) -> None:
        SSDError.__init__(self, message)
        self.code = code  # the code of the error it explains (a server's may be newer than this client)
        # tornado's reason is the status line's phrase: a stable code only, never free text.
        reason = f"ssd {code}" if _CODE.fullmatch(code) else None
        web.HTTPError.__init__(self, 500, message, reason=reason)
        self.args = ()  # HTTPError formats log_message with args; SSDError's str is the message


def lay_out(message: str) -> str:
    """*message* with its last ssd-ctl command on a line of its own, indented (a laid-out message: unchanged)."""
    if "\n" in message:
        return message
    lead, command, rest = split_command(message)
    if command is None:
        return message
    return f"{lead}\n    {command}" + (f"\n{rest}" if rest else "")


def split_command(message: str) -> tuple[str, str | None, str]:
    """*message* cut around its last ssd-ctl command: the text that leads to it (ending with a colon), the
    command, what follows it."""
    found = list(_COMMAND.finditer(message))
    if not found:
        return message, None, ""
    command = found[-1]
    lead = message[: command.start()].rstrip()
    lead = _ASIDE.sub(lambda m: f". {m.group(1)[0].upper()}{m.group(1)[1:]}:", lead)  # "x (see:" -> "x. See:"
    lead = lead.rstrip(" (")
    if not lead.endswith(":"):
        lead = f"{lead.rstrip('.;,')}. Run:" if lead else "Run:"
    rest = message[command.end() :].strip(" )")
    return lead, command.group(0), rest if rest.strip(".") else ""


def explain(exc: SSDError, *, host: str, env: str, doing: str = "start a kernel") -> KernelStartError:
    """The error Jupyter shows: what could not be done on which host, why, and the command that fixes it."""
    if isinstance(exc, KernelStartError):
        return exc
    where = f"ssd could not {doing} on {host} ({_short(env)})."
    text = exc.message.strip()
    if isinstance(exc, RemoteError):  # the host's words: one line, no control characters (no forged log lines)
        text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    reason = _sentence(text)
    fix = _FIXES.get(exc.code)
    if fix is None:
        return KernelStartError(f"{where}\n{lay_out(reason)}", code=exc.code)
    # Ours names the fix for a Jupyter user (the host's own hint is for ssd-ctl users): the reason without it.
    lead, command, _ = split_command(reason)
    if command is not None:
        reason = _sentence(lead.rsplit(". ", 1)[0] if lead.endswith(":") else lead)
    hint, command = fix
    return KernelStartError(f"{where}\n{reason}\n{hint}\n    {command.format(host=host)}", code=exc.code)


def _sentence(text: str) -> str:
    """*text* as a sentence: a capital first letter (unless it starts with a command), a full stop."""
    if text and "\n" not in text and text[-1] not in ".:!?)":
        text += "."
    if not text[:1].islower() or text.startswith("ssd-ctl"):
        return text
    return text[0].upper() + text[1:]


def _short(env: str) -> str:
    """An environment as a person names it: the last part of its prefix."""
    name = env.rstrip("/").rsplit("/", 1)[-1]
    return f"environment {name}" if name else "the environment"
