"""Checks a schema cannot express: references, unique ids, expressions and their field paths.

Every finding becomes a located Diagnostic; nothing here stops at the first problem. The
checks run on models built from schema-valid items only, so one broken rule does not hide the
typed-mapping errors of its neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine import expressions
from engine.config.actions import ActionBase, Enroll, Exit, NotifyEmail, NotifySlack, SendEmail
from engine.config.daemon import DaemonConfig
from engine.config.diagnostics import Diagnostic, Severity, did_you_mean, one_of, shorten
from engine.config.loader import Document, escape
from engine.config.model import PLACEHOLDER, Rule, Sequence, Template, link_variable
from engine.config.schema import Schema, event_data_schema, step_context_schema
from engine.config.typecheck import PathChecker, _Type
from engine.config.types import parse_duration

T = TypeVar("T")


@dataclass(frozen=True)
class Located(Generic[T]):
    """A model together with the file and JSON Pointer it was read from."""

    item: T
    document: Document
    pointer: str


@dataclass
class Reporter:
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def report(
        self,
        document: Document,
        pointer: str,
        message: str,
        *,
        expected: str | None = None,
        hint: str | None = None,
        key: bool = False,
        severity: Severity = "error",
        offset: int | None = None,
    ) -> None:
        if offset is None:
            line, column = document.position(pointer, key=key)
        else:
            line, column = document.offset_position(pointer, offset)
        self.diagnostics.append(
            Diagnostic(document.path, line, column, pointer, message, expected, hint, severity)
        )


@dataclass
class _Input:
    """What an expression sees: a schema and a phrase naming it in messages."""

    schema: Schema
    subject: str


def _event_input(event_type: str) -> _Input:
    return _Input(event_data_schema(event_type), f"{event_type} events")


def _step_input() -> _Input:
    return _Input(step_context_schema(), "the step context")


class SemanticChecker:
    """Runs every cross-file check over one config set."""

    def __init__(
        self,
        rules: list[Located[Rule]],
        sequences: list[Located[Sequence]],
        templates: list[Located[Template]],
        daemon: Located[DaemonConfig] | None,
        invalid_ids: set[str] | None = None,
        earlier_errors: bool = False,
    ) -> None:
        self.rules = rules
        self.sequences = sequences
        self.templates = templates
        self.daemon = daemon
        # items that exist but failed the schema: references to them are not errors too
        self.invalid_ids = invalid_ids or set()
        self.earlier_errors = earlier_errors
        self.unused: list[tuple[Document, str, str]] = []
        self.out = Reporter()
        self.sequence_by_id = {s.item.id: s for s in sequences}
        self.template_by_id = {t.item.id: t for t in templates}
        self.used_templates: set[str] = set()
        self.reported_paths: set[tuple[str, str, str]] = set()
        # sequence id -> the (event type, place) of each rule action that enrols into it
        self.enrolments: dict[str, list[tuple[str, Located[Rule]]]] = {}

    def run(self) -> list[Diagnostic]:
        self._unique_ids("rule", self.rules)
        self._unique_ids("sequence", self.sequences)
        self._unique_ids("template", self.templates)
        for rule in self.rules:
            self._rule(rule)
        for sequence in self.sequences:
            self._sequence(sequence)
        for template in self.templates:
            self._template(template)
        if self.daemon is not None:
            self._daemon(self.daemon)
        # "never used" is noise while errors stand: a broken reference makes things look unused
        if not self.earlier_errors and not any(d.severity == "error" for d in self.out.diagnostics):
            for document, pointer, message in self.unused:
                self.out.report(document, pointer, message, severity="warning", hint=_UNUSED_HINT)
        return self.out.diagnostics

    # -- helpers ---------------------------------------------------------------------------
    def _unique_ids(self, noun: str, items: Iterable[Located[Any]]) -> None:
        seen: dict[str, Located[Any]] = {}
        for located in items:
            ident = located.item.id
            if ident in seen:
                first = seen[ident]
                line, _ = first.document.position(f"{first.pointer}/id")
                self.out.report(
                    located.document,
                    f"{located.pointer}/id",
                    f"duplicate {noun} id {ident!r}",
                    hint=f"first defined at {first.document.path}:{line}; ids are unique "
                    "across all files",
                )
            else:
                seen[ident] = located

    def expression(
        self, document: Document, pointer: str, text: str, source: _Input
    ) -> _Type | None:
        """Check syntax and field paths; returns the result type, None on a syntax error."""
        parsed = expressions.parse(text)
        if isinstance(parsed, expressions.SyntaxProblem):
            self.out.report(
                document,
                pointer,
                f"invalid JMESPath: {parsed.message}",
                expected="a JMESPath expression, e.g. candidate.email or "
                "application.stage.name == 'Interview Scheduled'",
                hint=f"at character {parsed.offset + 1} of {shorten(text, 80)}",
                offset=parsed.offset,
            )
            return None
        checker = PathChecker(source.schema, source.subject)
        result = checker.check(parsed.parsed)
        for problem in checker.problems:
            seen = (document.path, pointer, problem.path)
            if seen in self.reported_paths:  # same mistake seen through another trigger
                continue
            self.reported_paths.add(seen)
            self.out.report(
                document,
                pointer,
                problem.message,
                expected=problem.expected,
                hint=problem.hint,
                offset=problem.offset_in(text),
            )
        return result

    # -- rules and actions ---------------------------------------------------------------
    def _rule(self, located: Located[Rule]) -> None:
        rule, document, pointer = located.item, located.document, located.pointer
        source = _event_input(rule.trigger)
        if rule.condition is not None:
            self.expression(document, f"{pointer}/condition", rule.condition, source)
        for index, action in enumerate(rule.actions):
            self._action(document, f"{pointer}/actions/{index}", action, source)
            if isinstance(action, Enroll):
                self.enrolments.setdefault(action.params.sequence, []).append(
                    (rule.trigger, located)
                )

    def _action(self, document: Document, pointer: str, action: ActionBase, src: _Input) -> None:
        for target, text in action.fields.items():
            self.expression(document, f"{pointer}/fields/{escape(target)}", text, src)
        for required in action.required_fields:
            if required not in action.fields:
                self.out.report(
                    document,
                    pointer,
                    f"{action.type} needs the field {required!r} mapped",
                    expected=f"fields: {{{required}: <JMESPath>}}",
                    hint=_REQUIRED_HINTS.get(required),
                )
        if not action.open_fields:
            allowed = action.known_fields
            for target in action.fields:
                if target not in allowed:
                    self.out.report(
                        document,
                        f"{pointer}/fields/{escape(target)}",
                        f"{action.type} has no field {target!r}",
                        expected=one_of(allowed) if allowed else "no fields for this action",
                        hint=did_you_mean(target, allowed),
                        key=True,
                    )
        for param in ("subject", "text", "body"):
            template_text = getattr(getattr(action, "params", None), param, None)
            if isinstance(template_text, str):
                self._placeholders(document, f"{pointer}/params/{param}", template_text, action)
        if isinstance(action, SendEmail):
            self._send_email(document, pointer, action)
        elif isinstance(action, Enroll | Exit):
            self._sequence_ref(document, pointer, action)
        elif isinstance(action, NotifySlack | NotifyEmail):
            self._target_ref(document, pointer, action)

    def _placeholders(
        self, document: Document, pointer: str, text: str, action: ActionBase
    ) -> None:
        for match in PLACEHOLDER.finditer(text):
            name = match.group(1)
            if name not in action.fields:
                self.out.report(
                    document,
                    pointer,
                    f"placeholder {{{name}}} has no field",
                    expected=f"fields: {{{name}: <JMESPath>}}",
                    hint=did_you_mean(name, action.fields),
                    offset=match.start(),
                )

    def _resolve(
        self, document: Document, pointer: str, noun: str, ident: str, known: dict[str, Located[T]]
    ) -> Located[T] | None:
        """The declared item, or None after reporting an unknown id (unless it exists but is
        itself invalid: that file already has its error, and one mistake is one error)."""
        found = known.get(ident)
        if found is None and ident not in self.invalid_ids:
            self.out.report(
                document,
                pointer,
                f"unknown {noun} {ident!r}",
                expected=one_of(known) if known else f"a {noun} id",
                hint=did_you_mean(ident, known)
                or f"{noun}s are declared under '{noun}s:' in a config file",
            )
        return found

    def _send_email(self, document: Document, pointer: str, action: SendEmail) -> None:
        template_id = action.params.template
        template = self._resolve(
            document, f"{pointer}/params/template", "template", template_id, self.template_by_id
        )
        if template is None:
            return
        self.used_templates.add(template_id)
        for variable in template.item.variables:
            if variable not in action.fields:
                self.out.report(
                    document,
                    f"{pointer}/fields",
                    f"template {template_id!r} needs the variable {variable!r}",
                    expected=f"fields: {{{variable}: <JMESPath>}}",
                    hint=did_you_mean(variable, action.fields),
                    key=True,
                )
        declared = {
            *template.item.variables,
            *(link_variable(x) for x in template.item.links),
            "to",
        }
        for target in action.fields:
            if target not in declared:
                self.out.report(
                    document,
                    f"{pointer}/fields/{escape(target)}",
                    f"template {template_id!r} has no variable {target!r}",
                    expected=one_of(declared),
                    hint=did_you_mean(target, declared)
                    or "declare it in the template's variables, or remove the mapping",
                    key=True,
                    severity="warning",
                )

    def _sequence_ref(self, document: Document, pointer: str, action: Enroll | Exit) -> None:
        sequence_id = action.params.sequence
        if sequence_id == "*":
            return
        sequence = self._resolve(
            document, f"{pointer}/params/sequence", "sequence", sequence_id, self.sequence_by_id
        )
        if sequence is None:
            return
        if isinstance(action, Enroll) and action.params.start_at_step is not None:
            steps = [step.id for step in sequence.item.steps]
            if action.params.start_at_step not in steps:
                self.out.report(
                    document,
                    f"{pointer}/params/start_at_step",
                    f"sequence {sequence_id!r} has no step {action.params.start_at_step!r}",
                    expected=one_of(steps),
                    hint=did_you_mean(action.params.start_at_step, steps),
                )

    def _target_ref(
        self, document: Document, pointer: str, action: NotifySlack | NotifyEmail
    ) -> None:
        target = action.params.target
        if target is None or self.daemon is None:
            return
        kind = "slack" if isinstance(action, NotifySlack) else "email"
        names = [t.name for t in self.daemon.item.alerting.targets if t.kind == kind]
        if target not in names:
            self.out.report(
                document,
                f"{pointer}/params/target",
                f"no {kind} alerting target {target!r} in {self.daemon.document.path}",
                expected=one_of(names) if names else f"a {kind} target under alerting.targets",
                hint=did_you_mean(target, names),
            )

    # -- sequences -------------------------------------------------------------------------
    def _sequence(self, located: Located[Sequence]) -> None:
        sequence, document, pointer = located.item, located.document, located.pointer
        seen_steps: set[str] = set()
        for index, exit_on in enumerate(sequence.exit_on):
            if not isinstance(exit_on, str) and exit_on.condition is not None:
                self.expression(
                    document,
                    f"{pointer}/exit_on/{index}/condition",
                    exit_on.condition,
                    _event_input(exit_on.event),
                )
        self._duration_not_negative(document, f"{pointer}/misfire/grace", sequence.misfire.grace)
        if sequence.send_window is not None:
            self._window(
                document,
                f"{pointer}/send_window",
                sequence.send_window.start,
                sequence.send_window.end,
            )
        for index, step in enumerate(sequence.steps):
            step_pointer = f"{pointer}/steps/{index}"
            if step.id in seen_steps:
                self.out.report(
                    document,
                    f"{step_pointer}/id",
                    f"duplicate step id {step.id!r} in sequence {sequence.id!r}",
                    hint="step ids keep enrolled candidates in place across edits; "
                    "each must be unique",
                )
            seen_steps.add(step.id)
            if parse_duration(step.at).total_seconds() < 0 and not (step.anchor or sequence.anchor):
                self.out.report(
                    document,
                    f"{step_pointer}/at",
                    f"negative offset {step.at!r} without an anchor",
                    expected="an anchor date (anchor: interview.start_at) for offsets before it",
                    hint="without an anchor, offsets count from enrolment, which is already now",
                )
            if step.repeat is not None and parse_duration(step.repeat.every).total_seconds() <= 0:
                self.out.report(
                    document,
                    f"{step_pointer}/repeat/every",
                    f"repeat interval {step.repeat.every!r} is not positive",
                    expected="a positive duration, e.g. 30d",
                    hint="a step cannot repeat every zero or negative time",
                )
            if step.misfire is not None:
                self._duration_not_negative(
                    document, f"{step_pointer}/misfire/grace", step.misfire.grace
                )
            if step.send_window is not None:
                self._window(
                    document,
                    f"{step_pointer}/send_window",
                    step.send_window.start,
                    step.send_window.end,
                )
            context = _step_input()
            if step.condition is not None:
                self.expression(document, f"{step_pointer}/condition", step.condition, context)
            elif step.otherwise is not None:
                self.out.report(
                    document,
                    f"{step_pointer}/otherwise",
                    "'otherwise' without a 'condition' can never run",
                    expected="condition: <JMESPath> on the step",
                    key=True,
                )
            self._action(document, f"{step_pointer}/do", step.do, context)
            if step.otherwise is not None:
                self._action(document, f"{step_pointer}/otherwise", step.otherwise, context)
        self._anchors(located)

    def _anchors(self, located: Located[Sequence]) -> None:
        sequence, document, pointer = located.item, located.document, located.pointer
        enrolled_by = self.enrolments.get(sequence.id, [])
        if not enrolled_by:
            self.unused.append(
                (
                    document,
                    f"{pointer}/id",
                    f"sequence {sequence.id!r} is never enrolled by any rule",
                )
            )
            return
        places: list[tuple[str, str, bool]] = []
        if sequence.anchor:
            places.append((f"{pointer}/anchor", sequence.anchor, True))
        if sequence.key:
            places.append((f"{pointer}/key", sequence.key, False))
        for index, step in enumerate(sequence.steps):
            if step.anchor:
                places.append((f"{pointer}/steps/{index}/anchor", step.anchor, True))
        not_dates: dict[str, list[str]] = {}
        for trigger in sorted({trigger for trigger, _ in enrolled_by}):
            rule_ids = sorted({r.item.id for t, r in enrolled_by if t == trigger})
            source = _Input(
                event_data_schema(trigger),
                f"{trigger} events (rule {', '.join(rule_ids)} enrols here)",
            )
            for place, text, must_be_date in places:
                result = self.expression(document, place, text, source)
                if (
                    must_be_date
                    and result is not None
                    and PathChecker(source.schema, source.subject).is_date(result) is False
                ):
                    not_dates.setdefault(place, []).append(trigger)
        for place, triggers in not_dates.items():
            text = str(document.data_at(place))
            self.out.report(
                document,
                place,
                f"anchor {text!r} is not a date in {', '.join(triggers)} events",
                expected="a date-time field such as interview.start_at",
                hint="the rules that enrol into this sequence fire on those events",
            )

    def _duration_not_negative(self, document: Document, pointer: str, text: str) -> None:
        if parse_duration(text).total_seconds() < 0:
            self.out.report(
                document,
                pointer,
                f"duration {text!r} must not be negative",
                expected="a duration such as 24h",
            )

    def _window(self, document: Document, pointer: str, start: str, end: str) -> None:
        if start == end:
            self.out.report(
                document,
                f"{pointer}/end",
                f"send window starts and ends at {start}",
                expected="an end different from the start",
                hint="a window that wraps midnight is written start: 22:00, end: 06:00",
            )

    # -- templates and the daemon config -------------------------------------------------
    def _template(self, located: Located[Template]) -> None:
        template, document, pointer = located.item, located.document, located.pointer
        known = {*template.variables, *(link_variable(x) for x in template.links)}
        texts = {"subject": template.subject, "body": template.body or ""}
        for part, text in texts.items():
            for match in PLACEHOLDER.finditer(text):
                name = match.group(1)
                if name not in known:
                    self.out.report(
                        document,
                        f"{pointer}/{part}",
                        f"{part} uses {{{name}}}, which is not a variable",
                        expected=one_of(known) if known else "declared variables",
                        hint=did_you_mean(name, known),
                        # a column is only trustworthy on one line
                        offset=None if "\n" in text else match.start(),
                    )
        daemon = self.daemon
        if daemon is not None and daemon.item.mail.via == "smtp" and template.body is None:
            self.out.report(
                document,
                f"{pointer}/id",
                f"template {template.id!r} has no body, but mail goes via smtp "
                f"({daemon.document.path}: mail.via)",
                expected="body: <plain text with {placeholders}>",
                hint="over SMTP nurture renders the mail itself; crm_email_id is only used "
                "with mail.via: crm",
            )
        if template.id not in self.used_templates:
            self.unused.append(
                (
                    document,
                    f"{pointer}/id",
                    f"template {template.id!r} is not used by any rule or step",
                )
            )

    def _daemon(self, located: Located[DaemonConfig]) -> None:
        config, document = located.item, located.document
        vendor_for = {
            "greenhouse": config.vendors.greenhouse,
            "lever": config.vendors.lever,
            "ashby": config.vendors.ashby,
        }
        if vendor_for[config.ats] is None:
            self.out.report(
                document,
                "/vendors",
                f"ats is {config.ats!r} but vendors has no {config.ats!r} section",
                expected=f"vendors: {{{config.ats}: ...}}",
            )
        if config.vendors.hubspot is None:
            self.out.report(
                document,
                "/vendors",
                "crm is 'hubspot' but vendors has no 'hubspot'",
                expected="vendors: {hubspot: {token_env: ...}}",
            )
        greenhouse = config.vendors.greenhouse
        if greenhouse is not None:
            needs = (
                ["api_key_env"]
                if greenhouse.auth == "basic"
                else ["client_id_env", "client_secret_env"]
            )
            for name in needs:
                if getattr(greenhouse, name) is None:
                    self.out.report(
                        document,
                        "/vendors/greenhouse",
                        f"auth {greenhouse.auth!r} needs {name}",
                        expected=f"{name}: <ENVIRONMENT_VARIABLE_NAME>",
                    )
        names: set[str] = set()
        for index, target in enumerate(config.alerting.targets):
            if target.name in names:
                self.out.report(
                    document,
                    f"/alerting/targets/{index}/name",
                    f"duplicate alerting target {target.name!r}",
                )
            names.add(target.name)
        if config.mail.via == "smtp" and config.mail.smtp is None:
            self.out.report(
                document,
                "/mail",
                "mail.via is 'smtp' but mail has no 'smtp' relay",
                expected="mail: {via: smtp, smtp: {host: ..., port: 587, sender: ...}}",
            )
        acceptor = config.server.acceptor
        if acceptor is not None and _same_address(acceptor.listen, config.server.listen):
            self.out.report(
                document,
                "/server/acceptor/listen",
                f"the acceptor's port is the daemon's ({config.server.listen}): one of the two"
                " could not listen",
                expected="another port, e.g. listen: 127.0.0.1:8081",
            )
        try:
            ZoneInfo(config.guardrails.default_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            self.out.report(
                document,
                "/guardrails/default_time_zone",
                f"unknown time zone {config.guardrails.default_time_zone!r}",
                expected="an IANA zone such as Europe/Berlin or UTC",
            )


def _same_address(one: str, other: str) -> bool:
    """Whether two ``host:port`` listeners would take the same socket (a wildcard host
    takes the port on every address)."""
    (host, port), (other_host, other_port) = one.rsplit(":", 1), other.rsplit(":", 1)
    wildcard = {"0.0.0.0", "::", "[::]", "*", ""}
    return port == other_port and (host == other_host or {host, other_host} & wildcard != set())


_UNUSED_HINT = "use it (sequence.enroll or crm.send_email) or remove it"


_REQUIRED_HINTS = {
    "email": "map the candidate's address, e.g. email: candidate.email",
    "to": "map the recipient, e.g. to: candidate.email",
    "candidate_id": "name the ATS record to write, e.g. candidate_id: candidate.id",
}
