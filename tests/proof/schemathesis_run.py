"""schemathesis against the running daemon, driven by ``schema/openapi.yaml``.

The ``st`` command line (a subprocess: schemathesis keeps its own event loop and threads out of
ours) generates positive and negative requests for every documented operation, with the admin
token so the admin operations are exercised and checked for ignoring it; every answer must not
be a 5xx and must conform to the document (status, content type, headers, body schema). Its
JSON report gives the counts. ``positive_data_acceptance`` is left out on purpose: a webhook
the generator builds cannot carry a valid signature, so refusing it is right.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from tests.proof.results import Result, Size
from tests.proof.target import SECRETS, target

OPENAPI = Path(__file__).resolve().parents[2] / "schema" / "openapi.yaml"
SECONDS = {Size.REDUCED: 12, Size.FULL: 300}
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "ignored_auth",
]


ACCEPTOR_PATHS = r"^/(webhooks/(greenhouse|ashby|generic|\{source\})|healthz|metrics)$"
"""The documented operations an acceptor process serves (Lever and HubSpot stay on the
daemon's port: their deliveries are read back from the vendor)."""


def command(url: str, seconds: int, report: Path, seed: int, paths: str | None = None) -> list[str]:
    st = Path(sys.executable).with_name("st")
    only = ["--include-path-regex", paths] if paths else []
    return [
        str(st),
        "run",
        str(OPENAPI),
        "--url",
        url,
        "--checks",
        ",".join(CHECKS),
        "--max-time",
        str(seconds),
        "--workers",
        "1",
        "--seed",
        str(seed),
        "--header",
        f"Authorization: Bearer {SECRETS['NURTURE_ADMIN_TOKEN']}",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        "--no-color",
        *only,
    ]


def summarise(report: Path) -> tuple[int, list[str]]:
    """(test cases recorded, failures named by operation and check) from the ndjson events."""
    cases = 0
    failures: list[str] = []
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished.get("recorder", {})
        cases += len(recorder.get("cases", {}))
        for checks in recorder.get("checks", {}).values():
            for check in checks:
                if check.get("status") != "success":
                    failure = (check.get("failure_info") or {}).get("failure") or {}
                    title = failure.get("title", check.get("status"))
                    failures.append(f"{recorder.get('label', '?')}: {check['name']}: {title}")
    return cases, sorted(set(failures))


async def run(size: Size, *, acceptor: bool = False) -> Result:
    """``acceptor``: against the acceptor process's port, for the operations it serves."""
    name = "schemathesis: the live daemon against schema/openapi.yaml"
    result = Result(name + (" (acceptor process: webhooks, healthz, metrics)" if acceptor else ""))
    # CI replays one seed (a failure there reproduces); the full run explores a new one
    seed = 20260302 if size is Size.REDUCED else random.randrange(2**31)
    async with target(acceptor=acceptor) as live:
        url, paths = live.url, None
        if acceptor:
            assert live.acceptor_url is not None
            url, paths = live.acceptor_url, ACCEPTOR_PATHS
        with tempfile.TemporaryDirectory(prefix="nurture-st-") as tmp:
            report = Path(tmp) / "events.ndjson"
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                *command(url, SECONDS[size], report, seed, paths),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await process.communicate()
            seconds = time.monotonic() - started
            cases, failures = summarise(report) if report.exists() else (0, [])
        ready, _ = await live.running.get("/readyz")
        log = live.log.read_text(errors="replace")
    from tests.proof.hostile import leaks

    tail = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    result.bad_inputs_tried = cases
    result.figures = {
        "generated requests": f"{cases:,} in {seconds:.1f} s ({len(CHECKS)} checks each)",
        "schemathesis": f"seed {seed}: {tail[0].strip('= ')[:160]}",
    }
    if failures:
        result.figures["failures"] = "; ".join(failures[:5])
    result.invariants = {
        "no 5xx and every answer conforms to the OpenAPI document": (
            process.returncode == 0 and not failures and cases > 0
        ),
        "daemon ready afterwards": ready == 200,
        "no secret and no email address in the daemon's log": not leaks(log),
    }
    return result
