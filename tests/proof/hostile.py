"""Hostile input against the running daemon: every webhook endpoint fuzzed over real HTTP.

Hypothesis draws hostile deliveries (``hostile_cases``) and sends them one at a time to
``nurture run`` (a subprocess, every source configured); each answer must be the status the
OpenAPI document gives for it, as JSON with ``error`` and ``detail``, and never a 5xx. Between
them, genuine signed deliveries from every source (Greenhouse alternately signed with the
previous, still configured secret) are sent, each twice: the first must be accepted, the second
be a duplicate, and every one must be processed completely (a CRM contact and exactly one
receipt, or a suppression). Malformed HTTP framing is sent over raw sockets. The YAML loader,
the other edge where outside text enters, is fuzzed in-process (``yaml_fuzz``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from hypothesis import HealthCheck, Phase, given, settings

from tests.proof import yaml_fuzz
from tests.proof.hostile_cases import Case, cases
from tests.proof.results import Result, Size
from tests.proof.target import SECRET_VALUES, SECRETS, SOURCES, Delivery, Target, target

FUZZ_SECONDS = {Size.REDUCED: 10.0, Size.FULL: 240.0}
YAML_SECONDS = {Size.REDUCED: 5.0, Size.FULL: 60.0}
VALID_EVERY = 8  # one genuine delivery (and its redelivery) per this many hostile ones
MAX_BODY = 65_536  # server.max_body_bytes in the target's nurture.yaml
RAW_FRAMING = [
    b"POST /webhooks/greenhouse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Content-Length: 7\r\n\r\nabcde",
    b"POST /webhooks/greenhouse HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /webhooks/greenhouse HTTP/1.1\r\nHost: x\r\nBad\x00Name: 1\r\nContent-Length: 0\r\n\r\n",
    b"POST /webhooks/greenhouse HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    b"POST /webhooks/greenhouse HTTP/9.9\r\nHost: x\r\n\r\n",
    b"POST /webhooks/greenhouse HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /webhooks/greenhouse HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST /webhooks/\xc3\xa9 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"POST /webhooks/greenhouse HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\nContent-Type: b\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,  # TLS on the HTTP port
    b"POST /webhooks/greenhouse HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\n"
    b"Content-Length: 2\r\n\r\n{}",
]


class Fuzzer:
    """Sends cases from hypothesis' thread on the event loop that owns the HTTP session."""

    def __init__(self, target: Target, session: aiohttp.ClientSession) -> None:
        self.target, self.session = target, session
        self.loop = asyncio.get_running_loop()
        self.statuses: Counter[int] = Counter()
        self.sent = 0
        self.valid: list[Delivery] = []
        self.valid_answers_wrong: list[str] = []
        self.failure: str | None = None

    # -- one hostile request ---------------------------------------------------------------
    async def send(self, case: Case) -> tuple[int, str, bytes]:
        from multidict import CIMultiDict

        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in case.headers:
            headers.add(name, value)
        data: Any = case.body
        if isinstance(case.body, list):
            data = _chunks(case.body)
        async with self.session.post(
            self.target.url_for(case.path) + case.path,
            data=data,
            headers=headers,
            skip_auto_headers=["Content-Type"],
        ) as answer:
            return answer.status, answer.content_type, await answer.read()

    def check(self, case: Case) -> None:
        """The hypothesis test body: one case, its answer judged against the oracle."""
        try:
            status, content_type, raw = asyncio.run_coroutine_threadsafe(
                self.send(case), self.loop
            ).result(timeout=60)
        except aiohttp.ClientError as exc:
            raise AssertionError(f"no answer ({exc!r}) for {case.describe()}") from None
        self.sent += 1
        self.statuses[status] += 1
        assert status < 500, f"{status} for {case.describe()}: {raw[:300]!r}"
        assert status in case.expect, (
            f"{status} (expected {sorted(case.expect)}) for {case.describe()}: {raw[:300]!r}"
        )
        assert content_type == "application/json", f"{content_type} for {case.describe()}"
        answer = json.loads(raw)
        if status >= 400:
            assert isinstance(answer.get("error"), str) and isinstance(answer.get("detail"), str)
            if case.error is not None:
                assert answer["error"] == case.error, f"{answer} for {case.describe()}"
        text = raw.decode("utf-8", "replace")
        assert not any(secret in text for secret in SECRET_VALUES), "a secret in an answer"
        if self.sent % VALID_EVERY == 0:
            asyncio.run_coroutine_threadsafe(self.genuine(), self.loop).result(timeout=60)

    # -- interleaved genuine traffic -------------------------------------------------------
    async def genuine(self) -> None:
        source = SOURCES[len(self.valid) % len(SOURCES)]
        delivery = self.target.valid(source)
        if source == "greenhouse" and len(self.valid) % 2:  # rotation: the old secret still signs
            headers = self.target.sign(
                source, delivery.body, secret=SECRETS["GREENHOUSE_WEBHOOK_SECRET_PREVIOUS"]
            )
            delivery.headers = headers
        self.valid.append(delivery)
        first, again = {"accepted": 1, "duplicates": 0}, {"accepted": 0, "duplicates": 1}
        for attempt, expected in ((1, first), (2, again)):
            status, _, raw = await self.target.post(
                self.session, f"/webhooks/{source}", delivery.body, delivery.headers
            )
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = raw[:200]
            if (status, answer) != (200, expected):
                self.valid_answers_wrong.append(f"{source} attempt {attempt}: {status} {answer}")

    def run_round(self) -> None:
        """One hypothesis run (its own random seed); a falsified case ends the fuzzing."""

        @settings(
            max_examples=150,
            deadline=None,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(cases(self.target, MAX_BODY))
        def hostile(case: Case) -> None:
            self.check(case)

        try:
            hostile()
        except Exception as exc:  # the shrunk counterexample, kept for the report
            while isinstance(exc, ExceptionGroup):  # hypothesis' "flaky": the first failure
                exc = exc.exceptions[0]
            self.failure = f"{type(exc).__name__}: {str(exc)[:500]}"


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def framing(target: Target) -> list[str]:
    """Requests the HTTP parser must refuse with a 4xx; returns what went wrong."""
    wrong = []
    for port, raw in ((port, raw) for port in target.ports for raw in RAW_FRAMING):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            await writer.drain()
            async with asyncio.timeout(10):
                head = await reader.readline()
        finally:
            writer.close()
        parts = head.split()
        if len(parts) < 2 or not parts[1].isdigit() or not 400 <= int(parts[1]) < 500:
            wrong.append(f"{raw[:40]!r} -> {head[:80]!r}")
    return wrong


async def run(size: Size, *, acceptor: bool = False) -> Result:
    """``acceptor``: Greenhouse, Ashby and generic deliveries go to an acceptor process."""
    name = "hostile input: webhook fuzzing over HTTP, YAML loader fuzzing"
    result = Result(name + (" (acceptor process)" if acceptor else ""))
    # a fresh connection per request: a refusal that closes its connection (413 before the
    # body is read, an undecodable body) must not fail the next, unrelated request
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        target(acceptor=acceptor) as live,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        fuzzer = Fuzzer(live, session)
        started = time.monotonic()
        deadline = started + FUZZ_SECONDS[size]
        while time.monotonic() < deadline and fuzzer.failure is None:
            await asyncio.to_thread(fuzzer.run_round)
        fuzz_seconds = time.monotonic() - started
        framing_wrong = await framing(live)
        # the loader is fuzzed while the daemon works off the genuine traffic
        yaml_report = await asyncio.to_thread(yaml_fuzz.fuzz, YAML_SECONDS[size])

        async def drained() -> bool:
            return not live.unprocessed(fuzzer.valid)

        with contextlib.suppress(TimeoutError):
            await _until(drained, 120)
        missing = live.unprocessed(fuzzer.valid)
        receipts = Counter(str(s.get("to", "")).lower() for s in live.hubspot.state.sends.values())
        twice = [d.email for d in fuzzer.valid if d.kind == "contact" and receipts[d.email] != 1]
        ready, _ = await live.running.get("/readyz")
        log = live.log.read_text(errors="replace")
        taken_by_acceptor = await _acceptor_took(live, session) if acceptor else None

    statuses = ", ".join(f"{s} x{n}" for s, n in sorted(fuzzer.statuses.items()))
    framings = len(RAW_FRAMING) * len(live.ports)
    result.bad_inputs_tried = fuzzer.sent + framings + yaml_report.tried
    result.figures = {
        "hostile requests": f"{fuzzer.sent:,} in {fuzz_seconds:.1f} s ({statuses})",
        "genuine deliveries": f"{len(fuzzer.valid)} across {len(SOURCES)} sources, each sent twice",
        "malformed HTTP framings": str(framings),
        "YAML inputs": f"{yaml_report.tried:,} in {yaml_report.seconds:.1f} s "
        f"({yaml_report.refused:,} refused with a located error)",
    }
    if fuzzer.failure:
        result.figures["first falsified case"] = fuzzer.failure
    result.invariants = {
        "no 5xx and the documented status and JSON error for every hostile delivery": (
            fuzzer.failure is None and fuzzer.sent > 0
        ),
        "every genuine delivery accepted once, its redelivery a duplicate": (
            not fuzzer.valid_answers_wrong and bool(fuzzer.valid)
        ),
        "every genuine delivery processed completely": not missing,
        "exactly one receipt per genuine application": not twice,
        "malformed HTTP framing refused with a 4xx": not framing_wrong,
        "daemon ready after the fuzzing": ready == 200,
        "no secret and no email address in the daemon's log": not leaks(log),
        "YAML loader: no uncaught exception, every error located": yaml_report.ok,
    }
    if taken_by_acceptor is not None:
        result.figures["acceptor"] = f"{taken_by_acceptor:,} deliveries answered 200 there"
        result.invariants["the acceptor answered its sources' deliveries"] = taken_by_acceptor > 0
    if fuzzer.valid_answers_wrong:
        result.figures["genuine answers wrong"] = "; ".join(fuzzer.valid_answers_wrong[:3])
    if missing:
        result.figures["unprocessed"] = ", ".join(f"{d.source}:{d.email}" for d in missing[:5])
    if framing_wrong:
        result.figures["framing answered wrongly"] = "; ".join(framing_wrong)
    if yaml_report.problems:
        result.figures["YAML problems"] = "; ".join(yaml_report.problems[:3])
    return result


async def _acceptor_took(live: Target, session: aiohttp.ClientSession) -> int:
    """Deliveries the acceptor answered 200, from its own /metrics."""
    assert live.acceptor_url is not None
    async with session.get(live.acceptor_url + "/metrics") as answer:
        text = await answer.text()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("nurture_webhooks_total{") and 'status="200"' in line
    )


def leaks(log: str) -> list[str]:
    """Secret values and email addresses found in a daemon log (it must redact both)."""
    from engine.log_lines import EMAIL

    found = [f"secret {secret[:6]}..." for secret in SECRET_VALUES if secret in log]
    found += [f"email {match.group(0)}" for match in EMAIL.finditer(log)]
    return found


async def _until(check: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)  # polling another process's progress, not a timer of ours
