"""Operations commands: ``dlq list|replay``, ``pause``, ``resume`` and ``ingest``.

They act on the store named by ``--store URL``, else on ``store.url`` of ``--config
nurture.yaml``, else on ``$NURTURE_STORE_URL``, else on ``sqlite:///nurture.db``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from engine.clock import SystemClock
from engine.config.load import load_config
from engine.errors import EngineError
from engine.events import Event
from engine.store import queries
from engine.store.store import Store

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def _store_url(args: argparse.Namespace) -> str:
    if args.store:
        return str(args.store)
    if args.config:
        result = load_config([], daemon_path=args.config)
        if result.config is None or result.config.daemon is None:
            raise EngineError(f"{args.config} is not a valid daemon config; run nurture validate")
        return result.config.daemon.store.url
    return os.environ.get("NURTURE_STORE_URL", "sqlite:///nurture.db")


def _run(
    args: argparse.Namespace, out: TextIO, body: Callable[[Store, TextIO], Awaitable[int]]
) -> int:
    async def go() -> int:
        store = await Store.open(_store_url(args))
        try:
            return await body(store, out)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except EngineError as exc:
        sys.stderr.write(f"nurture: {exc}\n")
        return EXIT_ERRORS


def cmd_dlq(args: argparse.Namespace, out: TextIO) -> int:
    async def body(store: Store, out: TextIO) -> int:
        if args.dlq_command == "list":
            async with store.read() as conn:
                rows = await queries.dead_letters(conn)
            for row in rows:
                print(
                    f"{row['id']}\t{row['action_type']}\trule={row['rule_id']}\t"
                    f"candidate={row['candidate_id']}\tattempts={row['attempts']}\t"
                    f"{row['last_error']}",
                    file=out,
                )
            print(f"{len(rows)} dead letter(s)", file=out)
            return EXIT_OK
        if args.all == (args.id is not None):
            sys.stderr.write("nurture dlq replay: give one ID or --all\n")
            return EXIT_USAGE
        async with store.transaction() as conn:
            count = await queries.replay(conn, SystemClock().now(), args.id)
        print(f"{count} action(s) queued again", file=out)
        return EXIT_OK if count or args.all else EXIT_ERRORS

    return _run(args, out, body)


def cmd_pause(args: argparse.Namespace, out: TextIO) -> int:
    scope = args.rule or "*"

    async def body(store: Store, out: TextIO) -> int:
        async with store.transaction() as conn:
            if args.command == "pause":
                await queries.pause(conn, scope, SystemClock().now())
            else:
                await queries.resume(conn, scope)
            remaining = await queries.paused_scopes(conn)
        what = "all syncs" if scope == "*" else f"rule {scope}"
        print(f"{args.command}d {what}; paused now: {', '.join(remaining) or 'nothing'}", file=out)
        return EXIT_OK

    return _run(args, out, body)


def cmd_ingest(args: argparse.Namespace, out: TextIO) -> int:
    """Accept canonical events from a JSON-lines file, then run their actions to completion."""
    from adapters.hubspot.client import HubSpotClient
    from engine.runtime import Runtime

    result = load_config([Path(p) for p in args.paths])
    if result.config is None:
        for diagnostic in result.errors:
            sys.stderr.write(diagnostic.format_text() + "\n")
        return EXIT_ERRORS
    config = result.config
    token = os.environ.get(args.crm_token_env, "")

    async def body(store: Store, out: TextIO) -> int:
        clock = SystemClock()
        async with aiohttp.ClientSession() as session:
            crm = HubSpotClient(session, args.crm_url, token)
            runtime = Runtime.build(store, config, clock, crm, lease=timedelta(seconds=args.lease))
            stop, wake = asyncio.Event(), asyncio.Event()
            worker = asyncio.create_task(runtime.dispatcher.run_forever(stop, wake, idle=0.05))
            accepted = duplicates = 0
            with open(args.events, encoding="utf-8") as lines:
                for line in lines:
                    if line.strip():
                        outcome = await runtime.intake.accept(
                            Event.model_validate(json.loads(line))
                        )
                        duplicates += outcome.duplicate
                        accepted += not outcome.duplicate
                        wake.set()
            stop.set()
            await worker
            waiting = await _finish(runtime, store, clock, args.wait)
        print(
            f"accepted {accepted}, duplicates {duplicates}, "
            f"{waiting} action(s) still waiting (retry later or leased elsewhere)",
            file=out,
        )
        return EXIT_OK

    return _run(args, out, body)


async def _finish(runtime: Any, store: Store, clock: SystemClock, wait: float) -> int:
    """Run until no action is left, or only ones whose retry or foreign lease outlasts ``wait``.

    Actions claimed by a process that died stay leased until their lease expires; waiting
    for that is what lets a restarted run pick them up.
    """
    deadline = clock.now() + timedelta(seconds=wait)
    while True:
        await runtime.dispatcher.run_until_idle()
        async with store.read() as conn:
            counts = await queries.status_counts(conn)
            due = await queries.next_due_at(conn)
        waiting = sum(counts.get(s, 0) for s in ("pending", "running", "deferred"))
        if waiting == 0 or clock.now() >= deadline:
            return waiting
        if counts.get("running", 0) == 0 and due is not None and due > deadline:
            return waiting
        await asyncio.sleep(0.1)  # a real process waiting for real leases to lapse


def cmd_test(args: argparse.Namespace, out: TextIO) -> int:
    """Run declarative rule and sequence tests on a virtual clock."""
    from engine.testing import load_test_file, run_case

    result = load_config([Path(p) for p in args.config_paths], daemon_path=args.config)
    if result.config is None:
        for diagnostic in result.errors:
            sys.stderr.write(diagnostic.format_text() + "\n")
        return EXIT_ERRORS
    config = result.config
    files: list[Path] = []
    for given in args.paths:
        path = Path(given)
        files.extend(sorted(path.rglob("*.test.yaml")) if path.is_dir() else [path])
    if not files:
        sys.stderr.write("nurture test: no *.test.yaml files found\n")
        return EXIT_USAGE

    async def run_all() -> tuple[int, int]:
        passed = failed = 0
        for file in files:
            spec, problems = load_test_file(file)
            if spec is None:
                for problem in problems:
                    print(problem, file=out)
                failed += 1
                continue
            for case in spec.tests:
                outcome = await run_case(config, case, str(file))
                if outcome.ok:
                    passed += 1
                    print(f"PASS  {file}: {case.name}", file=out)
                else:
                    failed += 1
                    print(f"FAIL  {file}: {case.name}", file=out)
                    for failure in outcome.failures:
                        print(f"      {failure}", file=out)
        return passed, failed

    passed, failed = asyncio.run(run_all())
    print(f"{passed} passed, {failed} failed", file=out)
    return EXIT_OK if failed == 0 else EXIT_ERRORS


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    """The daemon: webhooks, rules, outbox, sequences, pollers, until SIGTERM."""
    from engine.clock import ScaledClock
    from engine.daemon import run

    clock = None
    if args.simulated_clock:
        try:
            clock = ScaledClock.parse(args.simulated_clock)
        except ValueError as exc:
            sys.stderr.write(f"nurture run: {exc}\n")
            return EXIT_USAGE
    return asyncio.run(run(Path(args.config), debug=args.debug, clock=clock))


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """The shipped integration end to end on simulators and a virtual clock."""
    from engine.demo import main as demo

    workdir = Path(args.workdir) if args.workdir else None
    return demo(Path(args.repo).resolve(), out, workdir)


def register(commands: Any) -> None:
    def store_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--store", metavar="URL", help="sqlite:///file.db or postgresql://...")
        parser.add_argument("--config", metavar="NURTURE_YAML", help="read store.url from here")

    dlq = commands.add_parser("dlq", help="list or replay dead-lettered actions")
    sub = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = sub.add_parser("list", help="show dead letters with candidate, rule and reason")
    store_options(listing)
    replaying = sub.add_parser("replay", help="queue dead letters again (after a fix)")
    replaying.add_argument("id", nargs="?", type=int, help="one dead letter's id")
    replaying.add_argument("--all", action="store_true", help="every dead letter")
    store_options(replaying)
    for parser in (dlq, listing, replaying):
        parser.set_defaults(handler=cmd_dlq, id=None, all=False, store=None, config=None)
    listing.set_defaults(handler=cmd_dlq)

    for name, text in (
        ("pause", "stop running actions (all, or one rule); work waits"),
        ("resume", "run paused actions again"),
    ):
        parser = commands.add_parser(name, help=text)
        parser.add_argument("rule", nargs="?", help="a rule id (default: everything)")
        store_options(parser)
        parser.set_defaults(handler=cmd_pause)

    test = commands.add_parser(
        "test", help="run *.test.yaml rule and sequence tests on a virtual clock"
    )
    test.add_argument(
        "paths",
        nargs="*",
        default=["tests/rules"],
        help="test files or directories (default: tests/rules)",
    )
    test.add_argument(
        "--config-paths",
        nargs="+",
        default=["rules", "sequences"],
        help="the config under test (default: rules sequences)",
    )
    test.add_argument(
        "--config",
        metavar="NURTURE_YAML",
        help="daemon config whose guardrails apply (quiet hours, cap, zone)",
    )
    test.set_defaults(handler=cmd_test)

    run = commands.add_parser("run", help="run the daemon (webhooks, rules, sequences)")
    run.add_argument("--config", default="nurture.yaml", metavar="NURTURE_YAML")
    run.add_argument(
        "--debug", action="store_true", help="debug logs, with email addresses NOT redacted"
    )
    run.add_argument(
        "--simulated-clock",
        metavar="START,ORIGIN,RATE",
        help="testing only: the engine's time is START + (now - ORIGIN) * RATE (Unix seconds), "
        "so sequence days pass in minutes; the proof suite uses it",
    )
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser("demo", help="play 200+ candidates over 120 days on simulators")
    demo.add_argument("--repo", default=".", help="folder holding rules/ and sequences/")
    demo.add_argument("--workdir", help="where the demo database goes (default: .demo/)")
    demo.set_defaults(handler=cmd_demo)

    ingest = commands.add_parser(
        "ingest",
        help="accept canonical events from a JSON-lines file and run their actions against the CRM",
    )
    ingest.add_argument("events", help="file with one canonical event (JSON) per line")
    ingest.add_argument(
        "paths", nargs="*", default=["rules", "sequences"], help="config files or directories"
    )
    ingest.add_argument("--crm-url", required=True, help="HubSpot API base URL")
    ingest.add_argument(
        "--crm-token-env",
        default="HUBSPOT_TOKEN",
        help="environment variable holding the HubSpot token",
    )
    ingest.add_argument(
        "--lease",
        type=float,
        default=120.0,
        help="seconds an action stays claimed before another run may take it",
    )
    ingest.add_argument(
        "--wait",
        type=float,
        default=300.0,
        help="seconds to wait at the end for retries and for leases of a crashed run",
    )
    store_options(ingest)
    ingest.set_defaults(handler=cmd_ingest)
