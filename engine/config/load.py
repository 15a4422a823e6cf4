"""Load a config set exactly as the daemon does: parse, check shape, build models, cross-check.

``load_config`` never raises on bad input and never stops at the first problem: it returns
every diagnostic, a per-file summary, and the ``ConfigSet`` only when there is no error.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from engine.config.daemon import DaemonConfig
from engine.config.diagnostics import Diagnostic
from engine.config.loader import Document, parse_file
from engine.config.model import Rule, Sequence, Template
from engine.config.schema import config_validator, daemon_validator
from engine.config.semantic import Located, SemanticChecker
from engine.config.shape import check_shape

DAEMON_FILE_NAMES = frozenset({"nurture.yaml", "nurture.yml"})
CONFIG_SUFFIXES = (".yaml", ".yml")
TEST_SUFFIXES = (".test.yaml", ".test.yml")  # `nurture test` files live beside the config

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ConfigSet:
    """A valid configuration, ready to run."""

    rules: tuple[Rule, ...]
    sequences: dict[str, Sequence]
    templates: dict[str, Template]
    daemon: DaemonConfig | None
    digest: str


@dataclass
class FileReport:
    path: str
    kind: str
    rules: int = 0
    sequences: int = 0
    templates: int = 0
    errors: int = 0
    warnings: int = 0

    @property
    def ok(self) -> bool:
        return self.errors == 0


@dataclass
class LoadResult:
    config: ConfigSet | None
    diagnostics: list[Diagnostic]
    files: list[FileReport]
    unreadable: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def display_path(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative


def collect_files(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """Config files under the given paths (directories recursively), and paths that are missing."""
    files: list[Path] = []
    missing: list[str] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.name.endswith(CONFIG_SUFFIXES)
                and not p.name.endswith(TEST_SUFFIXES)
            )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            missing.append(str(path))
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique, missing


def _item_is_clean(pointer: str, bad_pointers: set[str]) -> bool:
    return not any(p == pointer or p.startswith(pointer + "/") for p in bad_pointers)


def _build(
    model: type[M], data: Any, document: Document, pointer: str, out: list[Diagnostic]
) -> M | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # the schema accepted what the model refuses: a drift bug
        line, column = document.position(pointer)
        out.append(
            Diagnostic(
                document.path,
                line,
                column,
                pointer,
                f"internal: schema and model disagree: {exc.errors()[0]['msg']}",
                hint="please report this; the schema files may be stale",
            )
        )
        return None


def load_config(paths: Iterable[Path | str], daemon_path: Path | str | None = None) -> LoadResult:
    """Load and check every file under ``paths`` (and ``nurture.yaml`` if given or found)."""
    files, missing = collect_files(Path(p) for p in paths)
    if daemon_path is not None:
        daemon_file = Path(daemon_path)
        if daemon_file.is_file():
            files = [daemon_file.resolve(), *[f for f in files if f != daemon_file.resolve()]]
        else:
            missing.append(str(daemon_path))
    diagnostics: list[Diagnostic] = []
    reports: list[FileReport] = []
    rules: list[Located[Rule]] = []
    sequences: list[Located[Sequence]] = []
    templates: list[Located[Template]] = []
    daemon: Located[DaemonConfig] | None = None
    invalid_ids: set[str] = set()  # ids of items with shape errors: exist, but unchecked
    digest = hashlib.sha256()
    unreadable = list(missing)

    for missing_path in missing:
        diagnostics.append(Diagnostic(missing_path, 1, 1, "", "no such file or directory"))

    for path in files:
        shown = display_path(path)
        is_daemon = path.name in DAEMON_FILE_NAMES
        report = FileReport(shown, "daemon" if is_daemon else "config")
        reports.append(report)
        document, found = parse_file(path, shown)
        file_diagnostics = list(found)
        if document is None:
            if any("cannot read" in d.message for d in found):
                unreadable.append(shown)
        else:
            digest.update(shown.encode() + b"\0" + repr(document.data).encode())
            validator = daemon_validator() if is_daemon else config_validator()
            # a value the loader already refused (a forbidden tag) is not reported twice
            refused = {d.pointer for d in found}
            shape = [d for d in check_shape(document, validator) if d.pointer not in refused]
            file_diagnostics.extend(shape)
            bad = {d.pointer for d in file_diagnostics}
            data = document.data if isinstance(document.data, dict) else {}
            if is_daemon:
                if not shape and not found:
                    built = _build(DaemonConfig, data, document, "", file_diagnostics)
                    if built is not None:
                        daemon = Located(built, document, "")
            else:
                for key, model, bucket in (
                    ("rules", Rule, rules),
                    ("sequences", Sequence, sequences),
                    ("templates", Template, templates),
                ):
                    items = data.get(key)
                    if not isinstance(items, list):
                        continue
                    for index, item in enumerate(items):
                        pointer = f"/{key}/{index}"
                        obj = None
                        if _item_is_clean(pointer, bad) and "" not in bad:
                            obj = _build(model, item, document, pointer, file_diagnostics)
                        if obj is not None:
                            bucket.append(Located(obj, document, pointer))  # type: ignore[arg-type]
                        elif isinstance(item, dict) and isinstance(item.get("id"), str):
                            invalid_ids.add(item["id"])
                report.rules = (
                    len(data.get("rules") or []) if isinstance(data.get("rules"), list) else 0
                )
                report.sequences = (
                    len(data.get("sequences") or [])
                    if isinstance(data.get("sequences"), list)
                    else 0
                )
                report.templates = (
                    len(data.get("templates") or [])
                    if isinstance(data.get("templates"), list)
                    else 0
                )
        diagnostics.extend(file_diagnostics)

    diagnostics.extend(
        SemanticChecker(
            rules,
            sequences,
            templates,
            daemon,
            invalid_ids,
            earlier_errors=any(d.severity == "error" for d in diagnostics),
        ).run()
    )
    diagnostics = sorted(set(diagnostics), key=lambda d: (d.file, d.line, d.column, d.message))
    by_file = {r.path: r for r in reports}
    for diagnostic in diagnostics:
        owner = by_file.get(diagnostic.file)
        if owner is not None:
            if diagnostic.severity == "error":
                owner.errors += 1
            else:
                owner.warnings += 1

    has_errors = any(d.severity == "error" for d in diagnostics)
    config = None
    if not has_errors:
        config = ConfigSet(
            rules=tuple(r.item for r in rules),
            sequences={s.item.id: s.item for s in sequences},
            templates={t.item.id: t.item for t in templates},
            daemon=daemon.item if daemon else None,
            digest=digest.hexdigest()[:16],
        )
    return LoadResult(config, diagnostics, reports, unreadable)
