"""Security checks against the running daemon.

- Admin endpoints refuse without the bearer token, with a wrong one (another secret of the
  daemon, a prefix, other case, no scheme, bytes that are not text) and answer with it.
- Signed links: a genuine one is thanked and recorded once; tampered, re-signed with another
  key, truncated and expired ones get the plain refusal page and record nothing.
- YAML cannot construct objects: a rule file that would create a directory through
  ``!!python/object/apply:os.mkdir`` (and other Python tags) is rejected by ``nurture validate``'s
  loader with a located error and, dropped into the live daemon's rules folder, by its reload;
  the directory never appears and the old config keeps serving.
- Templates render in a sandbox: texts are filled by ``{name}`` only, so ``{x.__class__}``,
  ``{0}`` and ``{x!r}`` stay literal and a candidate named ``{0.__class__}`` is not expanded.
- No secret value (webhook secrets, API tokens, admin token, link secret, SMTP password) and no
  email address of the traffic appears in any line the daemon logged, although the daemon
  stored those addresses; a refused HTTP request whose bad header carries the admin token is
  logged without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from engine.config.load import load_config
from engine.links import LinkClaim, LinkSigner
from tests.proof.hostile import leaks
from tests.proof.results import Result, Size
from tests.proof.target import SECRETS, SOURCES, Target, target

TOKEN = SECRETS["NURTURE_ADMIN_TOKEN"]
ADMIN = [
    ("GET", "/admin/status", b""),
    ("POST", "/admin/pause", b'{"rule": "application-to-crm"}'),
    ("POST", "/admin/resume", b'{"rule": "application-to-crm"}'),
    ("POST", "/admin/dlq/replay", b'{"all": true}'),
]
WRONG_AUTH = [
    None,
    "Bearer",
    "Bearer ",
    "Bearer wrong",
    TOKEN,
    f"bearer {TOKEN}",
    f"Bearer {TOKEN[:-1]}",
    f"Bearer {TOKEN}x",
    f"Bearer  {TOKEN}",
    f"Basic {TOKEN}",
    f"Bearer {SECRETS['NURTURE_LINK_SECRET']}",
    f"Bearer {SECRETS['GREENHOUSE_WEBHOOK_SECRET']}",
    "Bearer \u00e9\u00e8\u00ff",
]
PYTHON_TAGS = [
    "!!python/object/apply:os.mkdir [{path}]",
    "!!python/object/new:os.mkdir [{path}]",
    "!<tag:yaml.org,2002:python/object/apply:os.mkdir> [{path}]",
    "!!python/name:os.mkdir",
    "!!python/module:os",
]
SANDBOX_TEXT = "new: {first_name} | {first_name.__class__} | {0} | {first_name!r}"


async def admin(live: Target, session: aiohttp.ClientSession) -> tuple[list[str], int]:
    wrong: list[str] = []
    tried = 0
    for method, path, body in ADMIN:
        for auth in WRONG_AUTH:
            headers = {"Authorization": auth} if auth is not None else {}
            async with session.request(method, live.url + path, data=body, headers=headers) as r:
                tried += 1
                answer = await r.json() if r.content_type == "application/json" else None
                if r.status != 401 or (answer or {}).get("error") != "unauthorized":
                    wrong.append(f"{method} {path} with {str(auth)[:12]!r}...: {r.status}")
        async with session.request(
            method, live.url + path, data=body, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as r:
            if r.status != 200:
                wrong.append(f"{method} {path} with the token: {r.status}")
    return wrong, tried


def link_events(live: Target) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(live.folder / "nurture.db")) as db:
        rows = db.execute("SELECT subject, type FROM inbox WHERE source = 'nurture/links'")
        return [(str(subject), str(kind)) for subject, kind in rows]


async def links(live: Target, session: aiohttp.ClientSession) -> tuple[list[str], int]:
    now = datetime.now(UTC)
    signer = LinkSigner(SECRETS["NURTURE_LINK_SECRET"].encode(), live.url)
    genuine = LinkClaim("cand-link-1", "link-person@proof.example.com", "keep-me-posted", now)
    good = signer.token(LinkClaim(**{**genuine.__dict__, "expires": now + timedelta(days=3)}))
    payload, signature = good.split(".")
    other = LinkSigner(b"not-the-daemon-link-secret", live.url)
    forged_payload = signer.token(
        LinkClaim("cand-link-2", None, "keep-me-posted", now + timedelta(days=3))
    ).split(".")[0]
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    refused = {
        "other candidate, old signature": f"{forged_payload}.{signature}",
        "flipped signature": f"{payload}.{flipped}",
        "signed with another key": other.token(genuine),
        "truncated signature": f"{payload}.{signature[:20]}",
        "no signature": payload,
        "truncated payload": f"{payload[:-4]}.{signature}",
        "expired": signer.token(LinkClaim(**{**genuine.__dict__, "expires": now})),
        "expired an hour ago": signer.token(
            LinkClaim(**{**genuine.__dict__, "expires": now - timedelta(hours=1)})
        ),
        "empty signature": f"{payload}.",
        "not base64": "%%%.%%%",
    }
    wrong: list[str] = []
    for what, token in refused.items():
        async with session.get(f"{live.url}/l/{token}") as r:
            text = await r.text()
            if r.status != 400 or r.content_type != "text/html" or "<p>" not in text:
                wrong.append(f"{what}: {r.status} {r.content_type}")
    if link_events(live):
        wrong.append(f"refused links recorded {link_events(live)}")
    for _ in range(2):  # the genuine one, twice: thanked both times, recorded once
        async with session.get(f"{live.url}/l/{good}") as r:
            if r.status != 200 or "Thank you" not in await r.text():
                wrong.append(f"genuine link: {r.status}")
    if link_events(live) != [("cand-link-1", "link.clicked")]:
        wrong.append(f"genuine link recorded as {link_events(live)}")
    return wrong, len(refused)


def yaml_objects_offline(folder: Path) -> tuple[list[str], int]:
    """The loader ``nurture validate`` and the daemon share: each Python tag is a located error."""
    wrong = []
    for index, tag in enumerate(PYTHON_TAGS):
        target_dir = folder / f"made-by-yaml-{index}"
        rules = folder / f"tag-{index}.yaml"
        rules.write_text(f"version: 1\nrules: {tag.format(path=json.dumps(str(target_dir)))}\n")
        result = load_config([rules])
        errors = [d for d in result.errors if d.line == 2 and "tag" in d.message.lower()]
        if result.config is not None or not errors or target_dir.exists():
            wrong.append(f"{tag}: {[d.format_text() for d in result.diagnostics]}")
    return wrong, len(PYTHON_TAGS)


async def yaml_objects_live(live: Target) -> list[str]:
    """The same file in the running daemon's rules folder, then SIGHUP: rejected whole."""
    made = live.folder / "made-by-daemon-yaml"
    bad = live.folder / "rules" / "zz-objects.yaml"
    bad.write_text(f"version: 1\nrules: !!python/object/apply:os.mkdir [{json.dumps(str(made))}]\n")
    live.running.signal(signal.SIGHUP)

    async def rejected() -> bool:
        return await live.running.metric("nurture_last_reload_success") == 0.0

    wrong = []
    try:
        await _until(rejected, 30)
    except TimeoutError:
        wrong.append("the daemon did not reject the reload")
    if made.exists():
        wrong.append("the daemon's YAML load created a directory")
    bad.unlink()
    live.running.signal(signal.SIGHUP)

    async def recovered() -> bool:
        return await live.running.metric("nurture_last_reload_success") == 1.0

    try:
        await _until(recovered, 30)
    except TimeoutError:
        wrong.append("the daemon did not reload the good config again")
    return wrong


async def sandbox(live: Target, session: aiohttp.ClientSession) -> list[str]:
    """A candidate named ``{0.__class__}`` through a text with attribute and index syntax."""
    from tests.proof.target import example

    document = example("greenhouse", 9_999, "sandbox@proof.example.com")
    candidate = document["payload"]["application"]["candidate"]
    candidate["first_name"], candidate["last_name"] = "{0.__class__}", "Sandbox"
    body = json.dumps(document).encode()
    status, _, raw = await live.post(
        session, "/webhooks/greenhouse", body, live.sign("greenhouse", body)
    )
    if status != 200:
        return [f"sandbox application: {status} {raw[:200]!r}"]
    expected = SANDBOX_TEXT.replace("{first_name}", "{0.__class__}", 1)

    async def posted() -> bool:
        return bool(live.slack.messages)

    try:
        await _until(posted, 30)
    except TimeoutError:
        return ["no Slack message for the sandbox rule"]
    texts = [str(m.get("text")) for m in live.slack.messages]
    # the Slack adapter puts a title line above the text
    if len(texts) == 1 and texts[0].splitlines()[-1] == expected:
        return []
    return [f"Slack got {texts!r}, expected one message ending {expected!r}"]


async def token_in_refused_header(live: Target) -> None:
    """A request the HTTP parser refuses because of the bad header that carries the token."""
    reader, writer = await asyncio.open_connection("127.0.0.1", live.running.port)
    line = f"Authorization: Bearer {TOKEN}\x01\r\n"
    writer.write(f"GET /admin/status HTTP/1.1\r\nHost: x\r\n{line}\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(10):
        await reader.readline()
    writer.close()


async def run(size: Size) -> Result:
    result = Result("security: admin token, signed links, YAML objects, sandbox, log scan")
    async with target() as live, aiohttp.ClientSession() as session:
        admin_wrong, admin_tried = await admin(live, session)
        link_wrong, links_tried = await links(live, session)
        with tempfile.TemporaryDirectory(prefix="nurture-yaml-objects-") as tmp:
            offline_wrong, tags_tried = yaml_objects_offline(Path(tmp))
        live_wrong = await yaml_objects_live(live)
        sandbox_wrong = await sandbox(live, session)
        await token_in_refused_header(live)
        deliveries = [live.valid(source) for source in SOURCES for _ in range(4)]
        for delivery in deliveries:
            await live.post(
                session, f"/webhooks/{delivery.source}", delivery.body, delivery.headers
            )

        async def drained() -> bool:
            return not live.unprocessed(deliveries)

        with contextlib.suppress(TimeoutError):
            await _until(drained, 60)
        unprocessed = live.unprocessed(deliveries)
        with contextlib.closing(sqlite3.connect(live.folder / "nurture.db")) as db:
            stored = "\n".join(str(row) for row in db.execute("SELECT data FROM inbox"))
        log = live.log.read_text(errors="replace")
    emails = [d.email for d in deliveries] + ["sandbox@proof.example.com"]
    seen = [email for email in emails if email in stored]
    found = leaks(log)
    lines = len(log.splitlines())
    result.bad_inputs_tried = admin_tried + links_tried + tags_tried + 2
    result.figures = {
        "admin requests without a valid token": f"{admin_tried} ({len(ADMIN)} operations)",
        "forged or expired links": str(links_tried),
        "Python YAML tags": f"{tags_tried} offline + 1 live reload",
        "log lines scanned": f"{lines:,}, for {len(SECRETS)} secrets and {len(seen)} addresses "
        "the daemon stored",
    }
    for name, problems in (
        ("admin", admin_wrong),
        ("links", link_wrong),
        ("yaml", offline_wrong + live_wrong),
        ("sandbox", sandbox_wrong),
        ("leaks", found),
    ):
        if problems:
            result.figures[f"{name} problems"] = "; ".join(problems[:4])
    result.invariants = {
        "admin endpoints refuse without the token (401) and work with it": not admin_wrong,
        "tampered, truncated, foreign and expired links refused, nothing recorded": not link_wrong,
        "YAML cannot construct objects (validate and live reload)": not (
            offline_wrong or live_wrong
        ),
        "texts render {name} only (no attribute, index or conversion)": not sandbox_wrong,
        "no secret and no candidate email in any daemon log line": not found and lines > 0,
        "the scanned traffic reached the daemon (its addresses are stored)": (
            len(seen) == len(emails) and not unprocessed
        ),
    }
    return result


async def _until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)  # polling another process's progress, not a timer of ours
