"""Fuzz the YAML loader, the config edge: any bytes in a file must give located errors.

Inputs: arbitrary bytes and text, token soup built from YAML's own syntax (tags such as
``!!python/object/apply``, anchors and aliases, flow and block styles, tabs, directives,
document markers), and the shipped rule, sequence and daemon files with spans deleted,
duplicated or spliced with tokens. Each goes through ``load_config`` exactly as
``nurture validate`` and a daemon reload read it (a file on disk: parse, shape, semantics).
It must never raise, every diagnostic must carry the file, a line and column >= 1 and a message,
and a load that produced no config must say why.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from engine.config.load import load_config

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "rules").glob("*.yaml")) + sorted((REPO / "sequences").glob("*.yaml"))
TOKENS = [
    "version: 1\n",
    "rules:\n",
    "sequences:\n",
    "templates:\n",
    "  - ",
    "id: a\n",
    "trigger: ats.application.created\n",
    "actions:\n",
    "action: crm.upsert_contact\n",
    "fields: {email: candidate.email}\n",
    'condition: "candidate.email != `null`"\n',
    "!!python/object/apply:os.system [echo pwned]\n",
    "!!python/name:os.system\n",
    "!<tag:yaml.org,2002:python/object/new:dict>\n",
    "!!binary aGVsbG8=\n",
    "!!set {a, b}\n",
    "!!timestamp 2001-12-14\n",
    "!custom x\n",
    "&a [*a]\n",
    "&b ",
    "*b",
    "<<: *b\n",
    "? ",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    '"',
    "\\u0000",
    "|\n",
    ">-\n",
    "\t",
    "\n",
    "    ",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "%TAG ! tag:example.com,2000:\n",
    "# comment\n",
    "\ufeff",
    "\x00",
    "\u2028",
    ".inf",
    "0x1F",
    "1e999",
    "null",
    "~",
    "yes",
    "2026-03-02T09:00:00Z",
]


@dataclass
class Report:
    tried: int = 0
    refused: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.tried > 0 and not self.problems


def _spliced(source: bytes) -> st.SearchStrategy[bytes]:
    @st.composite
    def edit(draw: st.DrawFn) -> bytes:
        data = bytearray(source)
        for _ in range(draw(st.integers(1, 4))):
            start = draw(st.integers(0, len(data)))
            end = draw(st.integers(start, min(len(data), start + 200)))
            how = draw(st.sampled_from(["delete", "duplicate", "insert", "replace-byte"]))
            if how == "delete":
                del data[start:end]
            elif how == "duplicate":
                data[start:start] = data[start:end]
            elif how == "insert":
                data[start:start] = draw(st.sampled_from(TOKENS)).encode()
            elif data:
                data[min(start, len(data) - 1)] = draw(st.integers(0, 255))
        return bytes(data)

    return edit()


def inputs() -> st.SearchStrategy[bytes]:
    shipped = [path.read_bytes() for path in SHIPPED] + [(REPO / "nurture.yaml").read_bytes()]
    soup = st.lists(st.sampled_from(TOKENS), max_size=40).map(lambda parts: "".join(parts))
    return st.one_of(
        st.binary(max_size=600),
        st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),
        soup.map(str.encode),
        st.sampled_from(shipped).flatmap(_spliced),
    )


def check_one(folder: Path, raw: bytes, name: str) -> bool:
    """Load one file; returns whether it was refused, raises AssertionError on a bad answer."""
    path = folder / name
    path.write_bytes(raw)
    daemon = path if name == "nurture.yaml" else None
    try:
        result = load_config([] if daemon else [path], daemon_path=daemon)
    except Exception:
        raise AssertionError(
            f"load_config raised on {raw[:120]!r}: {traceback.format_exc(limit=-2)[-700:]}"
        ) from None
    for diagnostic in result.diagnostics:
        where = f"{diagnostic.format_text()!r} for {raw[:120]!r}"
        assert diagnostic.file.endswith(name), f"unlocated file: {where}"
        assert diagnostic.line >= 1 and diagnostic.column >= 1, f"no position: {where}"
        assert diagnostic.message.strip(), f"no message: {where}"
    if result.config is None:
        assert result.errors, f"no config and no error for {raw[:120]!r}"
    return result.config is None


def fuzz(seconds: float) -> Report:
    """Rounds of hypothesis runs until ``seconds`` are spent or one input is mishandled."""
    report = Report()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nurture-yaml-fuzz-") as tmp:
        folder = Path(tmp)

        @settings(
            max_examples=200,
            deadline=None,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(inputs(), st.sampled_from(["rules.yaml", "nurture.yaml"]))
        def loader(raw: bytes, name: str) -> None:
            report.tried += 1
            report.refused += check_one(folder, raw, name)

        while time.monotonic() - started < seconds and not report.problems:
            try:
                loader()
            except AssertionError as exc:
                report.problems.append(str(exc)[:1200])
    report.seconds = time.monotonic() - started
    return report
