"""The ``nurture`` command. It parses arguments, calls the engine, prints, and picks exit codes.

Exit codes: 0 ok, 1 errors found, 2 usage or unreadable input, 3 warnings only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from engine.cli_ops import register as register_operations
from engine.config.diagnostics import Diagnostic
from engine.config.load import ConfigSet, LoadResult, load_config
from engine.config.schema import config_file_schema, render, write_schema_files
from engine.live_edits import live_edit_warnings
from engine.store.store import Store

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_WARNINGS = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _summary_lines(result: LoadResult) -> list[str]:
    lines = []
    for report in result.files:
        parts = []
        if report.kind == "daemon":
            parts.append("daemon config")
        for count, word in (
            (report.rules, "rule"),
            (report.sequences, "sequence"),
            (report.templates, "template"),
        ):
            if count:
                parts.append(_plural(count, word))
        if report.errors:
            parts.append(_plural(report.errors, "error"))
        if report.warnings:
            parts.append(_plural(report.warnings, "warning"))
        status = "OK" if report.ok else "FAILED"
        lines.append(f"{status:6} {report.path} ({', '.join(parts) or 'empty'})")
    failed = sum(1 for r in result.files if not r.ok)
    lines.append(
        f"{_plural(len(result.files), 'file')}: {len(result.files) - failed} OK, {failed} FAILED; "
        f"{_plural(len(result.errors), 'error')}, {_plural(len(result.warnings), 'warning')}"
    )
    return lines


def _exit_code(result: LoadResult) -> int:
    if result.unreadable:
        return EXIT_USAGE
    if result.errors:
        return EXIT_ERRORS
    if result.warnings:
        return EXIT_WARNINGS
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    paths = [Path(p) for p in args.paths] or [Path("rules"), Path("sequences")]
    result = load_config(paths, daemon_path=args.config)
    if args.store and result.config is not None:
        edits = asyncio.run(_live_edit_warnings(args.store, result.config))
        result.diagnostics.extend(
            Diagnostic(str(args.store), 1, 1, "", text, severity="warning") for text in edits
        )
    if not result.files and not result.unreadable:
        sys.stderr.write(f"nurture validate: no .yaml files under {' '.join(map(str, paths))}\n")
        return EXIT_USAGE
    if args.format == "json":
        payload = {
            "ok": not result.errors,
            "files": [
                {
                    "path": r.path,
                    "ok": r.ok,
                    "rules": r.rules,
                    "sequences": r.sequences,
                    "templates": r.templates,
                    "errors": r.errors,
                    "warnings": r.warnings,
                }
                for r in result.files
            ],
            "diagnostics": [d.as_json() for d in result.diagnostics],
            "digest": result.config.digest if result.config else None,
        }
        print(json.dumps(payload, indent=2), file=out)
    else:
        for diagnostic in result.diagnostics:
            text = (
                diagnostic.format_github() if args.format == "github" else diagnostic.format_text()
            )
            print(text, file=out)
        if result.diagnostics and args.format == "text":
            print(file=out)
        for line in _summary_lines(result):
            print(line, file=out)
    return _exit_code(result)


async def _live_edit_warnings(url: str, config: ConfigSet) -> list[str]:
    store = await Store.open(url)
    try:
        return await live_edit_warnings(store, config)
    finally:
        await store.close()


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    if args.out is None:
        out.write(render(config_file_schema()))
        return EXIT_OK
    written = write_schema_files(Path(args.out))
    print(f"wrote {_plural(len(written), 'schema file')} to {args.out}", file=out)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nurture", description="Declarative ATS <-> CRM nurture engine.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    validate = commands.add_parser(
        "validate",
        help="check rule, sequence and template files exactly as the daemon loads them",
        description="Check config files (directories are searched for *.yaml). Exit 0 valid, "
        "1 errors, 2 usage or unreadable input, 3 warnings only.",
    )
    validate.add_argument(
        "paths", nargs="*", help="files or directories (default: rules sequences)"
    )
    validate.add_argument(
        "--config",
        metavar="NURTURE_YAML",
        help="also check the daemon config and references into it",
    )
    validate.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="github prints workflow annotations for pull requests",
    )
    validate.add_argument(
        "--store",
        metavar="URL",
        help="also warn about enrolled candidates a sequence edit affects (the daemon's store)",
    )
    validate.set_defaults(handler=cmd_validate)

    schema = commands.add_parser("schema", help="export the JSON Schemas of the config language")
    schema.add_argument(
        "--out",
        metavar="DIR",
        help="write every schema file under DIR (default: print the config schema)",
    )
    schema.set_defaults(handler=cmd_schema)
    register_operations(commands)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``nurture`` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.handler(args, out or sys.stdout)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
