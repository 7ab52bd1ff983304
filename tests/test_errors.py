"""The error contract: every stable code is one ErrorCode member, with a meaning; ssd/ never spells one as a string."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import ssd
from ssd.errors import ErrorCode, RemoteError, SSDError, Unreachable

PACKAGE = Path(ssd.__file__).parent
CODE_KEYS = {"ename", "error", "code"}  # the keys under which a reply or a --json document carries a code

# The wire values as released: a client and a server of different versions must agree on them.
RELEASED = {
    "bad_message", "bad_request", "unknown_message_type", "not_authorized", "service_unavailable", "worker_lost",
    "too_many_requests", "shutting_down", "internal_error", "auth_failed", "login_throttled", "account_disabled",
    "not_allowed", "key_add_failed", "key_remove_failed", "env_not_found", "env_ambiguous", "env_refused",
    "env_tool_failed", "kernel_not_found", "kernel_busy", "kernel_dead", "kernel_silent", "kernel_start_failed",
    "kernel_package_missing", "limit_reached", "cwd_refused", "env_var_refused", "unsafe_socket_dir",
    "unsupported_signal", "unreachable", "timeout", "server_untrusted", "server_key_mismatch", "certificate_invalid",
    "bad_reply", "tunnel_busy", "kernelspec_invalid", "kernelspec_write_failed", "usage", "not_found",
    "config_invalid", "key_file_invalid", "not_root", "not_initialized", "error",
}  # fmt: skip


def test_every_released_code_keeps_its_wire_value() -> None:
    """A code may be added, never renamed: each released value is still a member."""
    assert {code.value for code in ErrorCode} >= RELEASED


def test_every_code_says_what_it_means() -> None:
    """The protocol page lists each code with its meaning, one line each."""
    for code in ErrorCode:
        assert code.meaning, code
        assert "\n" not in code.meaning, code
        assert code.describe() == f"{code.value}: {code.meaning}"
    assert ErrorCode("timeout") is ErrorCode.TIMEOUT  # type: ignore[call-arg]  # lookup by wire value
    assert str(ErrorCode.KERNEL_BUSY) == "kernel_busy"  # what f-strings, JSON and msgspec write


def test_errors_carry_members_and_remote_codes_as_sent() -> None:
    """An error ssd raises carries a member; a server's reply keeps its code, even one this client does not know."""
    assert Unreachable("x").code is ErrorCode.UNREACHABLE
    assert SSDError("x", code=ErrorCode.USAGE).code is ErrorCode.USAGE
    assert SSDError("x").code is ErrorCode.ERROR
    assert RemoteError("from_a_newer_server", "x").code == "from_a_newer_server"


def _code_like(node: ast.AST) -> bool:
    """``x.code``, ``code``, ``ename``, ``reply["ename"]``, ``reply.get("ename")``: an expression holding a code."""
    if isinstance(node, ast.Attribute):
        return node.attr == "code"
    if isinstance(node, ast.Name):
        return node.id in ("code", "ename")
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value in CODE_KEYS
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value in CODE_KEYS
    return False


def _strings(node: ast.AST | None) -> Iterator[ast.Constant]:
    """The string literals of *node*, looking into tuples, lists and sets (``code in ("a", "b")``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for element in node.elts:
            yield from _strings(element)


def bare_codes(tree: ast.AST) -> Iterator[ast.Constant]:
    """String literals where a code goes: ``code=``, a comparison with a code, an error reply's ename, a class's
    ``code``, the keys of a table looked up by code."""
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "code":
            yield from _strings(node.value)
        elif isinstance(node, ast.Compare) and any(_code_like(side) for side in (node.left, *node.comparators)):
            for side in (node.left, *node.comparators):
                yield from _strings(side)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "error_content",
            "RemoteError",
        ):
            yield from _strings(node.args[0] if node.args else None)
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "code" for t in statement.targets
                ):
                    yield from _strings(statement.value)
        elif isinstance(node, ast.Dict):
            yield from _code_keyed(node)


def _code_keyed(node: ast.Dict) -> Iterator[ast.Constant]:
    """``{"ename": "x"}``, and a table whose keys are all codes (``{"timeout": ..., "unreachable": ...}``)."""
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Constant) and key.value == "ename":
            yield from _strings(value)
    keys = [key for key in node.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)]
    values = {code.value for code in ErrorCode} - {"error"}  # "error" is also a word (log levels, status)
    if keys and len(keys) == len(node.keys) and all(key.value in values for key in keys):
        yield from keys


def test_ssd_names_codes_only_by_member() -> None:
    """No error code in ssd/ is a bare string where it is raised, answered or matched."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for literal in bare_codes(ast.parse(path.read_text(), str(path))):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{literal.lineno}: {literal.value!r}")
    assert not found, "use ssd.errors.ErrorCode members:\n" + "\n".join(found)


def test_the_walk_finds_each_kind_of_bare_code() -> None:
    """The check above can fail: each pattern it looks for is found in a sample."""
    sample = """
raise SSDError("x", code="usage")
if exc.code == "kernel_busy": pass
if reply.get("ename") in ("auth_failed", "not_authorized"): pass
if reply["ename"] != "timeout": pass
error_content("bad_request", "no")
class E(SSDError):
    code = "env_refused"
FIXES = {"unreachable": 1, "timeout": 2}
document = {"ename": "kernel_dead"}
"""
    found = sorted((c.lineno, c.col_offset, c.value) for c in bare_codes(ast.parse(sample)))
    assert [value for _, _, value in found] == [
        "usage", "kernel_busy", "auth_failed", "not_authorized", "timeout", "bad_request", "env_refused",
        "unreachable", "timeout", "kernel_dead",
    ]  # fmt: skip
    clean = 'raise SSDError("x", code=ErrorCode.USAGE)\nif exc.code == ErrorCode.KERNEL_BUSY: pass\nlevel = "error"'
    assert list(bare_codes(ast.parse(clean))) == []
