"""ssd-ctl envs: the environments the logged-in user has on a host."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import msgspec
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TaskProgressColumn, TextColumn
from rich.text import Text

from ssd import contract
from ssd.client import AsyncClient, Event
from ssd.client.connection import until_subscribed
from ssd.contract import MessageType
from ssd.ctl.args import add_host
from ssd.ctl.commands import connected
from ssd.ctl.output import Output
from ssd.messages import EnvCreateRequest, EnvInstallRequest, EnvRemoveRequest, RequestContent
from ssd.replies import EnvOperationReply
from ssd.topics import ENV_PROGRESS, user_topic

__all__ = ["ENV_COMMANDS", "add_admin_parser", "add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``envs`` to ssd-ctl's parser."""
    envs = sub.add_parser("envs", parents=[common], help="list your environments on HOST (after a login)")
    add_host(envs)


def cmd_envs(args: argparse.Namespace, out: Output) -> int:
    """Table: name, kind, python, spyder-kernels, IPython, ipykernel, Spyder served, writable, prefix; then why not."""
    with connected(args, out) as client:
        envs: list[dict[str, Any]] = msgspec.to_builtins(client.env_list().envs)
    if args.json:
        out.document({"host": args.host, "envs": envs})
        return 0
    columns = ["name", "kind", "python", "spyder-kernels", "IPython", "ipykernel", "Spyder", "writable", "prefix"]
    rows = [
        (
            e["name"],
            e["kind"],
            e["python"] or "-",
            e["spyder_kernels"] or "-",
            e.get("ipython") or "-",
            e["ipykernel"] or "-",
            _spyder_cell(e),
            "yes" if e["writable"] else "no",
            e["prefix"],
        )
        for e in envs
    ]
    out.table(columns, rows, title=f"environments on {args.host}")
    for e in envs:
        if e.get("spyder_problem"):
            out.say(f"{e['name']} ({e['prefix']}) cannot serve Spyder: {e['spyder_problem']}")
    return 0


def _spyder_cell(env: dict[str, Any]) -> str:
    """The Spyder series an env serves, "broken" when its spyder-kernels cannot work (reason below), or "no"."""
    if env["spyder_ready"]:
        return ", ".join(env["spyder_versions"])
    return "broken (see below)" if env.get("spyder_problem") else "no"


def add_admin_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``env create|install|remove|cancel`` to ssd-ctl's parser."""
    env = sub.add_parser("env", help="create, change or remove your environments on HOST (after a login)")
    actions = env.add_subparsers(dest="env_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help="make a new environment")
    add_host(create)
    create.add_argument("name", metavar="NAME")
    create.add_argument("--python", metavar="X.Y", help="Python version (default: the host's python3)")
    create.add_argument("--package", "-p", action="append", default=[], metavar="SPEC", help="repeatable")
    create.add_argument("--tool", choices=["auto", "pip", "conda", "mamba", "micromamba"], default="pip")
    create.add_argument(
        "--spyder",
        metavar="VERSION",
        help="also install the spyder-kernels this Spyder needs (and pins for its known breaks)",
    )
    install = actions.add_parser("install", parents=[common], help="install packages into an environment")
    add_host(install)
    install.add_argument("env", metavar="ENV", help="name or prefix")
    install.add_argument("packages", nargs="*", metavar="SPEC")
    install.add_argument("--spyder", metavar="VERSION", help="install the spyder-kernels this Spyder needs (and pins)")
    remove = actions.add_parser("remove", parents=[common], help="remove an environment")
    add_host(remove)
    remove.add_argument("env", metavar="ENV", help="name or prefix")


def cmd_env(args: argparse.Namespace, out: Output) -> int:
    """Start the operation, follow its progress events, report how it ended."""
    message: MessageType[Any, EnvOperationReply]
    content: RequestContent
    if args.env_action == "create":
        message = contract.ENV_CREATE
        content = EnvCreateRequest(
            name=args.name,
            packages=args.package,
            tool=args.tool,
            python=args.python or None,
            spyder=args.spyder or None,
        )
    elif args.env_action == "install":
        message = contract.ENV_INSTALL
        content = EnvInstallRequest(env=args.env, packages=args.packages, spyder=args.spyder or None)
    else:
        message, content = contract.ENV_REMOVE, EnvRemoveRequest(env=args.env)
    with connected(args, out) as client:
        user = client.whoami().user
        end = client.run(follow_operation(client.aclient, user, message, content, out))
    if args.json:
        out.document(end)
    if end["state"] != "done":
        out.error(f"{args.env_action} {end['state']}: {end.get('line') or ''}")
        return 1
    out.say(f"{args.env_action} done: {end['target']}")
    return 0


async def follow_operation(
    client: AsyncClient, user: str, message: MessageType[Any, EnvOperationReply], content: RequestContent, out: Output
) -> dict[str, Any]:
    """Subscribe, send the request, show progress until the operation ends; Ctrl-C cancels it."""
    subscribed = asyncio.Event()
    events = client.events((user_topic(ENV_PROGRESS, user),), subscribed=subscribed)
    pending: asyncio.Future[Event] = asyncio.ensure_future(anext(events))
    await until_subscribed(subscribed)  # a quick operation's last event must not come before the subscription
    operation = ""
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
        console=out.err, transient=True, disable=out.as_json,
    )  # fmt: skip
    try:
        reply = await client.call(message, content)
        operation = reply.operation
        with bar:
            task = bar.add_task(f"{reply.kind} {reply.target}", total=100.0)
            while True:
                event = await pending
                pending = asyncio.ensure_future(anext(events))
                if event.content.get("operation") != operation:
                    continue
                _show(bar, task, event.content)
                if event.content.get("state") != "running":
                    return event.content
    except (KeyboardInterrupt, asyncio.CancelledError):
        if operation:
            await client.env_cancel(operation)
        raise
    finally:
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending  # the generator must be idle before it can be closed
        await events.aclose()


def _show(bar: Progress, task: TaskID, event: dict[str, Any]) -> None:
    """One progress event: the tool's line above the bar, the phase and percent in it."""
    if event.get("line") and event.get("state") == "running":
        bar.console.print(Text(str(event["line"]), style="dim"))
    bar.update(task, description=f"{event.get('kind')} {event.get('target')}: {event.get('phase')}")
    if isinstance(event.get("percent"), int | float):
        bar.update(task, completed=float(event["percent"]))


ENV_COMMANDS = {"envs": cmd_envs, "env": cmd_env}
