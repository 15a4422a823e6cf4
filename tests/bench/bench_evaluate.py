"""Benchmark: evaluate 20 rules over 100,000 events (issue target: 50,000 events/s in-process).

The events are generated canonical ``data`` dicts of 12 event types, in the shapes of
``engine.events`` (every generated shape is checked against its pydantic model first); the 20
rules are written in the style of the shipped ``rules/`` (a condition and 3-6 field mappings
each). Each run does what the engine does per event: take the rules whose trigger is the
event's type, evaluate each condition, and when it is true evaluate the field mappings. Two
evaluators do that same work:

* the jmespath interpreter, through ``engine.expressions.search`` (what the engine used);
* ``engine.compiled``: every condition and mapping compiled once into Python closures.

Both must produce identical results (a difference fails loudly, before any timing is shown).
A second, harsher workload evaluates all 20 conditions on every event, ignoring triggers.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from engine.compiled import Compiler, truthy
from engine.events import EVENT_DATA
from engine.expressions import SyntaxProblem, parse, search

from .common import Options, Row, verdict

NAME = "evaluate"
EVENTS = 100_000
TARGET_EVENTS_PER_SECOND = 50_000
SEED = 20240612
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def clock() -> datetime:
    """A fixed clock: ``days_since`` answers the same in every run and in both evaluators."""
    return NOW


# -- the rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    id: str
    trigger: str
    condition: str
    fields: dict[str, str]


# Negations are written `!(a.b)`: in jmespath.py `!a.b` parses as `(!a).b`, which is always null.
RULES: tuple[RuleSpec, ...] = (
    RuleSpec(
        "new-applicant-to-crm",
        "ats.application.created",
        "candidate.email != `null` && !(application.prospect) && !(candidate.do_not_contact)"
        " && candidate.segment != 'archived'",
        {
            "email": "candidate.email",
            "firstname": "candidate.first_name",
            "lastname": "candidate.last_name",
            "applied_role": "application.job.title",
            "lead_source": "application.source",
            "ats_url": "candidate.url",
        },
    ),
    RuleSpec(
        "prospect-to-crm",
        "ats.application.created",
        "candidate.email != `null` && application.prospect && !(candidate.do_not_contact)",
        {
            "email": "candidate.email",
            "firstname": "candidate.first_name",
            "lastname": "candidate.last_name",
            "ats_candidate_id": "candidate.id",
        },
    ),
    RuleSpec(
        "engineering-referral",
        "ats.application.created",
        "application.source == 'Referral' && application.job.department == 'Engineering'",
        {
            "job": "application.job.title",
            "name": "join(' ', [candidate.first_name, candidate.last_name])",
            "recruiter": "application.recruiter.email",
            "stage": "application.stage.name",
        },
    ),
    RuleSpec(
        "tag-by-department",
        "ats.application.created",
        "application.job.department != `null`"
        ' && contains(`["Engineering", "Data"]`, application.job.department)',
        {
            "candidate_id": "candidate.id",
            "tag": "lower(application.job.department)",
            "job_id": "application.job.id",
        },
    ),
    RuleSpec(
        "stage-to-crm",
        "ats.application.stage_changed",
        "application.stage.name != application.previous_stage.name && candidate.email != `null`",
        {
            "email": "candidate.email",
            "recruiting_stage": "application.stage.name",
            "previous_stage": "application.previous_stage.name",
            "recruiter_owner": "application.recruiter.email",
            "role": "application.job.title",
        },
    ),
    RuleSpec(
        "onsite-alert",
        "ats.application.stage_changed",
        "application.stage.name == 'Onsite' && application.job.department == 'Engineering'",
        {
            "name": "candidate.first_name",
            "stage": "application.stage.name",
            "job": "application.job.title",
            "location": "application.job.location",
        },
    ),
    RuleSpec(
        "offer-stage",
        "ats.application.stage_changed",
        'contains(`["Offer", "Reference Check"]`, application.stage.name)'
        " && !(candidate.do_not_contact)",
        {
            "candidate_id": "candidate.id",
            "email": "candidate.email",
            "role": "application.job.title",
            "recruiter": "application.recruiter.email",
        },
    ),
    RuleSpec(
        "silver-medalist",
        "ats.application.rejected",
        "application.rejection_reason.type == 'We rejected them'"
        ' && contains(`["Final Interview", "Offer"]`, application.previous_stage.name)'
        " && candidate.email != `null` && !(candidate.do_not_contact)",
        {
            "candidate_id": "candidate.id",
            "email": "candidate.email",
            "silver_medalist_role": "application.job.title",
            "stage": "application.previous_stage.name",
            "reason": "application.rejection_reason.name",
        },
    ),
    RuleSpec(
        "rejected-to-crm",
        "ats.application.rejected",
        "candidate.email != `null` && application.status == 'rejected'",
        {
            "email": "candidate.email",
            "hiring_stage": "'Rejected'",
            "rejected_at": "application.rejected_at",
            "reason": "application.rejection_reason.name",
        },
    ),
    RuleSpec(
        "hired-announcement",
        "ats.application.hired",
        "application.job.department != `null`",
        {
            "first": "candidate.first_name",
            "last": "candidate.last_name",
            "job": "application.job.title",
            "location": "application.job.location",
            "hired_at": "application.hired_at",
        },
    ),
    RuleSpec(
        "interview-scheduled",
        "ats.interview.scheduled",
        "candidate.email != `null` && interview.status == 'scheduled'",
        {
            "to": "candidate.email",
            "first_name": "candidate.first_name",
            "role": "application.job.title",
            "start_at": "interview.start_at",
            "interviewer": "interview.interviewers[0].name",
            "video_url": "interview.video_url",
        },
    ),
    RuleSpec(
        "interviewer-notice",
        "ats.interview.scheduled",
        "length(interview.interviewers) > `0`",
        {
            "to": "interview.interviewers[*].email",
            "candidate_name": "join(' ', [candidate.first_name, candidate.last_name])",
            "start_at": "interview.start_at",
            "role": "application.job.title",
        },
    ),
    RuleSpec(
        "interview-rescheduled",
        "ats.interview.rescheduled",
        "interview.previous_start_at != `null`"
        " && interview.previous_start_at != interview.start_at",
        {
            "to": "candidate.email",
            "first_name": "candidate.first_name",
            "start_at": "interview.start_at",
            "previous_start_at": "interview.previous_start_at",
            "time_zone": "interview.time_zone || candidate.time_zone",
        },
    ),
    RuleSpec(
        "interview-cancelled",
        "ats.interview.cancelled",
        "candidate.email != `null` && application.status == 'active'",
        {
            "to": "candidate.email",
            "first_name": "candidate.first_name",
            "role": "application.job.title",
            "interview_id": "interview.id",
        },
    ),
    RuleSpec(
        "strong-feedback",
        "ats.feedback.submitted",
        'contains(`["strong_yes", "yes"]`, feedback.recommendation)',
        {
            "candidate_id": "candidate.id",
            "interviewer": "feedback.interviewer.name",
            "recommendation": "feedback.recommendation",
            "job": "application.job.title",
            "submitted_at": "feedback.submitted_at",
        },
    ),
    RuleSpec(
        "stale-candidate",
        "ats.candidate.updated",
        "days_since(candidate.last_activity_at) > `180` && candidate.segment != 'archived'",
        {
            "candidate_id": "candidate.id",
            "email": "candidate.email",
            "segment": "'passive'",
            "days_inactive": "days_since(candidate.last_activity_at)",
        },
    ),
    RuleSpec(
        "suppression",
        "ats.candidate.updated",
        "candidate.email != `null`"
        " && (candidate.do_not_contact || contains(candidate.tags, 'Do Not Contact'))",
        {
            "email": "candidate.email",
            "candidate_id": "candidate.id",
            "tags": "candidate.tags",
        },
    ),
    RuleSpec(
        "nurture-opened",
        "crm.email.opened",
        "email.template != `null` && starts_with(email.template, 'nurture-')",
        {
            "email": "contact.email",
            "last_nurture_open": "email.occurred_at",
            "last_nurture_template": "email.template",
            "last_nurture_subject": "email.subject",
        },
    ),
    RuleSpec(
        "job-link-clicked",
        "crm.email.clicked",
        "candidate != `null` && email.url != `null` && contains(email.url, '/jobs/')",
        {
            "candidate_id": "candidate.id",
            "url": "email.url",
            "subject": "email.subject",
            "clicked_at": "email.occurred_at",
        },
    ),
    RuleSpec(
        "keep-me-posted",
        "link.clicked",
        "link.name == 'keep-me-posted'",
        {
            "email": "candidate.email",
            "firstname": "candidate.first_name",
            "keep_me_posted": "`true`",
            "clicked_at": "link.clicked_at",
            "interests": "candidate.tags[?starts_with(@, 'interest-')]",
        },
    ),
)

# -- the events ---------------------------------------------------------------------------------

# How often each type arrives: ATS application traffic dominates, as in a real account.
EVENT_MIX: dict[str, int] = {
    "ats.application.created": 26,
    "ats.application.stage_changed": 28,
    "ats.application.rejected": 10,
    "ats.application.hired": 2,
    "ats.interview.scheduled": 9,
    "ats.interview.rescheduled": 3,
    "ats.interview.cancelled": 2,
    "ats.feedback.submitted": 6,
    "ats.candidate.updated": 6,
    "crm.email.opened": 5,
    "crm.email.clicked": 2,
    "link.clicked": 1,
}
FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Guo", "Hana", "Ivan", "Jo")
LAST_NAMES = ("Lopez", "Okafor", "Schmidt", "Tanaka", "Nguyen", "Rossi", "Kowalski", "Haddad")
DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "Engineering": ("Backend Engineer", "Frontend Engineer", "Site Reliability Engineer"),
    "Data": ("Data Scientist", "Analytics Engineer"),
    "Design": ("Product Designer",),
    "Sales": ("Account Executive", "Solutions Engineer"),
    "People": ("Technical Recruiter",),
}
LOCATIONS = ("Berlin", "Lisbon", "Remote (EU)", "New York", None)
STAGES = (
    "Application Review",
    "Recruiter Screen",
    "Technical Screen",
    "Take-Home",
    "Onsite",
    "Final Interview",
    "Offer",
    "Reference Check",
)
SOURCES = ("LinkedIn", "Referral", "Careers Page", "Agency", "Job Board", None)
TAGS = (
    "Referral",
    "Silver Medalist",
    "interest-data",
    "interest-remote",
    "Do Not Contact",
    "Boomerang",
)
SEGMENTS = ("active", "silver_medalist", "passive", "archived", None)
ZONES = ("Europe/Berlin", "Europe/Lisbon", "America/New_York", None)
RECRUITERS = (("u-1", "Rita Chen"), ("u-2", "Sam Patel"), ("u-3", "Lea Martin"))
REJECTIONS = (
    ("Not Selected", "We rejected them"),
    ("Withdrew", "They rejected us"),
    ("Compensation", "They rejected us"),
    ("Skills Gap", "We rejected them"),
)
RECOMMENDATIONS = ("strong_yes", "yes", "no", "strong_no", "no_decision", None)
TEMPLATES = ("nurture-silver-day-60", "nurture-monthly", "interview-scheduled", None)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Factory:
    """Builds canonical ``data`` dicts with the field names and value types of engine.events."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0

    def _ago(self, max_days: int) -> str:
        return _iso(NOW - timedelta(seconds=self.rng.randrange(max_days * 86_400)))

    def _person(self, ident: str, name: str) -> dict[str, Any]:
        email = name.lower().replace(" ", ".") + "@corp.example"
        return {"id": ident, "name": name, "email": email if self.rng.random() < 0.9 else None}

    def candidate(self) -> dict[str, Any]:
        rng = self.rng
        self.serial += 1
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first.lower()}.{last.lower()}{self.serial}@mail.example"
        has_email = rng.random() < 0.93
        return {
            "id": f"cand-{self.serial}",
            "first_name": first,
            "last_name": last,
            "email": email if has_email else None,
            "emails": [email] if has_email else [],
            "phone": "+49 30 1234567" if rng.random() < 0.4 else None,
            "time_zone": rng.choice(ZONES),
            "tags": rng.sample(TAGS, rng.choice((0, 0, 1, 1, 2, 3))),
            "can_email": rng.random() < 0.95,
            "do_not_contact": rng.random() < 0.04,
            "segment": rng.choice(SEGMENTS),
            "url": f"https://ats.example/candidates/{self.serial}",
            "created_at": self._ago(900),
            "last_activity_at": self._ago(900) if rng.random() < 0.95 else None,
            "last_contacted_at": self._ago(400) if rng.random() < 0.6 else None,
        }

    def application(self, status: str = "active") -> dict[str, Any]:
        rng = self.rng
        department = rng.choice(sorted(DEPARTMENTS))
        stage_index = rng.randrange(1, len(STAGES))
        recruiter_id, recruiter_name = rng.choice(RECRUITERS)
        job_id = f"job-{rng.randrange(1, 60)}"
        application: dict[str, Any] = {
            "id": f"app-{self.serial}",
            "status": status,
            "prospect": rng.random() < 0.1,
            "job": {
                "id": job_id,
                "title": rng.choice(DEPARTMENTS[department]),
                "department": department if rng.random() < 0.97 else None,
                "location": rng.choice(LOCATIONS),
                "status": "open",
                "url": f"https://careers.example/jobs/{job_id}",
            },
            "stage": {"id": f"st-{stage_index}", "name": STAGES[stage_index]},
            "previous_stage": {"id": f"st-{stage_index - 1}", "name": STAGES[stage_index - 1]},
            "recruiter": self._person(recruiter_id, recruiter_name),
            "source": rng.choice(SOURCES),
            "applied_at": self._ago(120),
        }
        if status == "rejected":
            name, kind = rng.choice(REJECTIONS)
            application["rejected_at"] = self._ago(2)
            application["rejection_reason"] = {"name": name, "type": kind}
        if status == "hired":
            application["hired_at"] = self._ago(2)
        return application

    def interview(self, status: str = "scheduled", moved: bool = False) -> dict[str, Any]:
        rng = self.rng
        start = NOW + timedelta(hours=rng.randrange(2, 24 * 14))
        interviewers = [
            self._person(*rng.choice(RECRUITERS)) for _ in range(rng.choice((0, 1, 1, 2, 3)))
        ]
        interview: dict[str, Any] = {
            "id": f"int-{self.serial}",
            "title": rng.choice(("Phone Screen", "Technical", "System Design", "Panel")),
            "start_at": _iso(start),
            "end_at": _iso(start + timedelta(hours=1)),
            "time_zone": rng.choice(ZONES),
            "location": None,
            "video_url": "https://meet.example/abc-defg-hij" if rng.random() < 0.8 else None,
            "interviewers": interviewers,
            "status": status,
        }
        if moved:
            interview["previous_start_at"] = _iso(start - timedelta(days=rng.randrange(0, 3)))
        return interview

    def raw(self) -> dict[str, Any]:
        return {"vendor": "greenhouse", "action": "webhook", "payload_id": self.serial}

    def event(self, kind: str) -> dict[str, Any]:
        rng = self.rng
        candidate = self.candidate()
        if kind.startswith("ats.application."):
            status = {"rejected": "rejected", "hired": "hired"}.get(kind.rsplit(".", 1)[1])
            application = self.application(status or "active")
            return {"candidate": candidate, "application": application, "raw": self.raw()}
        if kind.startswith("ats.interview."):
            status = "cancelled" if kind.endswith("cancelled") else "scheduled"
            return {
                "candidate": candidate,
                "application": self.application(),
                "interview": self.interview(status, moved=kind.endswith("rescheduled")),
                "raw": self.raw(),
            }
        if kind == "ats.feedback.submitted":
            interviewer = self._person(*rng.choice(RECRUITERS))
            return {
                "candidate": candidate,
                "application": self.application(),
                "interview": self.interview("completed"),
                "feedback": {
                    "id": f"fb-{self.serial}",
                    "interview_id": f"int-{self.serial}",
                    "interviewer": interviewer,
                    "submitted_at": self._ago(1),
                    "recommendation": rng.choice(RECOMMENDATIONS),
                },
                "raw": self.raw(),
            }
        if kind == "ats.candidate.updated":
            return {"candidate": candidate, "raw": self.raw()}
        if kind.startswith("crm.email."):
            clicked = kind.endswith("clicked")
            url = rng.choice(
                ("https://careers.example/jobs/engineering/42", "https://blog.example/post")
            )
            return {
                "contact": {"id": f"crm-{self.serial}", "email": f"contact{self.serial}@x.example"},
                "email": {
                    "id": f"msg-{self.serial}",
                    "template": rng.choice(TEMPLATES),
                    "subject": "Roles we think you'll like",
                    "url": url if clicked else None,
                    "occurred_at": self._ago(1),
                },
                "candidate": candidate if rng.random() < 0.7 else None,
                "raw": {},
            }
        if kind == "link.clicked":
            return {
                "link": {
                    "name": rng.choice(("keep-me-posted", "unsubscribe-all")),
                    "clicked_at": self._ago(1),
                    "sequence": "silver-medalist",
                    "step": "day-60",
                },
                "candidate": candidate,
                "raw": {},
            }
        raise ValueError(f"no generator for {kind}")  # pragma: no cover - EVENT_MIX is fixed


def generate_events(count: int, seed: int = SEED) -> list[tuple[str, dict[str, Any]]]:
    """``count`` (type, data) pairs, the types drawn with the weights of EVENT_MIX."""
    factory = _Factory(seed)
    kinds = factory.rng.choices(
        sorted(EVENT_MIX), [EVENT_MIX[k] for k in sorted(EVENT_MIX)], k=count
    )
    return [(kind, factory.event(kind)) for kind in kinds]


class BenchmarkError(AssertionError):
    """The generated input is not canonical, or the two evaluators disagree."""


def check_shapes(events: Sequence[tuple[str, dict[str, Any]]], per_type: int = 50) -> None:
    """The first ``per_type`` events of each type must validate against their engine model."""
    seen: dict[str, int] = {}
    for kind, data in events:
        if seen.get(kind, 0) >= per_type:
            continue
        seen[kind] = seen.get(kind, 0) + 1
        EVENT_DATA[kind].model_validate(data)  # raises pydantic.ValidationError


# -- the two evaluators ---------------------------------------------------------------------

Evaluate = Callable[[Any], Any]


@dataclass(frozen=True)
class Rule:
    """One rule with its condition and mappings ready to evaluate."""

    id: str
    condition: Evaluate
    fields: tuple[tuple[str, Evaluate], ...]


def _parsed(text: str) -> ParsedResult:
    parsed = parse(text)
    if isinstance(parsed, SyntaxProblem):
        raise BenchmarkError(f"{text!r}: {parsed.message}")
    return parsed


def interpreted_rules(specs: Sequence[RuleSpec]) -> list[Rule]:
    """Rules evaluated by ``engine.expressions.search`` (parsed once, interpreted each time)."""

    def interpreter(text: str) -> Evaluate:
        parsed = _parsed(text)
        return lambda data: search(parsed, data, clock)

    return [
        Rule(
            spec.id,
            interpreter(spec.condition),
            tuple((name, interpreter(text)) for name, text in spec.fields.items()),
        )
        for spec in specs
    ]


def compiled_rules(specs: Sequence[RuleSpec], *, bare: bool = True) -> list[Rule]:
    """Rules compiled once by ``engine.compiled``.

    ``bare`` keeps each ``Compiled.function`` (the closure itself, what an engine loop should
    call); otherwise the ``Compiled`` objects are called, one ``__call__`` hop more each.
    """
    compiler = Compiler(clock)

    def compile_one(text: str) -> Evaluate:
        compiled = compiler.compile(_parsed(text))
        return compiled.function if bare else compiled

    return [
        Rule(
            spec.id,
            compile_one(spec.condition),
            tuple((name, compile_one(text)) for name, text in spec.fields.items()),
        )
        for spec in specs
    ]


def by_trigger(specs: Sequence[RuleSpec], rules: Sequence[Rule]) -> dict[str, list[Rule]]:
    index: dict[str, list[Rule]] = {}
    for spec, rule in zip(specs, rules, strict=True):
        index.setdefault(spec.trigger, []).append(rule)
    return index


Fired = list[tuple[int, str, dict[str, Any] | None]]
"""(event number, rule id, the mapped fields or None when evaluation raised)."""


def run_engine(events: Sequence[tuple[str, dict[str, Any]]], index: dict[str, list[Rule]]) -> Fired:
    """Per event: the rules of its trigger, their conditions, then the mappings of those true.

    Evaluation errors are recorded per rule (as the engine records them), not raised.
    """
    fired: Fired = []
    no_rules: list[Rule] = []
    for number, (kind, data) in enumerate(events):
        for rule in index.get(kind, no_rules):
            try:
                matched = rule.condition(data)
                if not truthy(matched):
                    continue
                fired.append((number, rule.id, {name: f(data) for name, f in rule.fields}))
            except JMESPathError:
                fired.append((number, rule.id, None))
    return fired


def run_all_conditions(
    events: Sequence[tuple[str, dict[str, Any]]], rules: Sequence[Rule]
) -> list[int]:
    """The harsher workload: all conditions on every event; returns per-rule match counts."""
    counts = [0] * len(rules)
    conditions = [rule.condition for rule in rules]
    for _, data in events:
        for position, condition in enumerate(conditions):
            try:
                matched = condition(data)
            except JMESPathError:
                continue
            if truthy(matched):
                counts[position] += 1
    return counts


# -- the measurement ------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """``runs`` timings of one evaluator over ``events`` events."""

    events: int
    seconds: list[float]

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def rate(self) -> float:
        return self.events / self.best

    def describe(self) -> str:
        median = statistics.median(self.seconds)
        return (
            f"{self.rate:,.0f} events/s ({self.events:,} events, best of {len(self.seconds)}: "
            f"{self.best:.2f} s, median {median:.2f} s)"
        )


@dataclass(frozen=True)
class Measurement:
    events: int
    rules: int
    expressions: int
    compile_seconds: float
    conditions_evaluated: int
    fired: int
    mappings_evaluated: int
    errors: int
    interpreter: Timing
    compiled: Timing
    compiled_objects: Timing
    all_interpreter: Timing
    all_compiled: Timing


def _timed(work: Callable[[], Any], runs: int, events: int) -> tuple[Timing, Any]:
    seconds: list[float] = []
    result: Any = None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - start)
    return Timing(events, seconds), result


def _first_difference(actual: Fired, expected: Fired) -> object:
    for pair in zip(actual, expected, strict=False):
        if pair[0] != pair[1]:
            return pair
    return (actual[len(expected) :][:1], expected[len(actual) :][:1])


def measure(
    events: int = EVENTS,
    runs: int = 3,
    *,
    interpreter_runs: int = 1,
    all_conditions_interpreter_events: int = 20_000,
) -> Measurement:
    """Generate ``events`` events; time the compiled rules ``runs`` times per workload.

    The interpreter is the slow baseline: it runs ``interpreter_runs`` times, and on the
    all-conditions workload only over the first ``all_conditions_interpreter_events`` events
    (its rate per event is what is compared; a full run would take some 20 s).
    """
    if events < 1 or runs < 1 or interpreter_runs < 1:
        raise ValueError("events and runs must be at least 1")
    generated = generate_events(events)
    check_shapes(generated)
    specs = RULES

    start = time.perf_counter()
    compiled = compiled_rules(specs)
    compile_seconds = time.perf_counter() - start
    interpreted = interpreted_rules(specs)
    objects = compiled_rules(specs, bare=False)

    # The engine workload: rules of the event's trigger, conditions, then mappings.
    interpreter, expected = _timed(
        lambda: run_engine(generated, by_trigger(specs, interpreted)), interpreter_runs, events
    )
    for rules in (compiled, objects):
        actual = run_engine(generated, by_trigger(specs, rules))
        if actual != expected:
            message = (
                "compiled and interpreted results differ; first difference: "
                f"{_first_difference(actual, expected)}"
            )
            print(message, file=sys.stderr)
            raise BenchmarkError(message)
    compiled_timing, _ = _timed(
        lambda: run_engine(generated, by_trigger(specs, compiled)), runs, events
    )
    objects_timing, _ = _timed(
        lambda: run_engine(generated, by_trigger(specs, objects)), runs, events
    )

    # The harsh workload: every condition on every event.
    subset = generated[: min(events, all_conditions_interpreter_events)]
    all_interpreter, expected_counts = _timed(
        lambda: run_all_conditions(subset, interpreted), interpreter_runs, len(subset)
    )
    counts = run_all_conditions(subset, compiled)
    if counts != expected_counts:
        raise BenchmarkError(f"condition match counts differ: {counts} != {expected_counts}")
    all_compiled, _ = _timed(lambda: run_all_conditions(generated, compiled), runs, events)

    triggered = by_trigger(specs, compiled)
    field_count = {spec.id: len(spec.fields) for spec in specs}
    return Measurement(
        events=events,
        rules=len(specs),
        expressions=sum(1 + len(spec.fields) for spec in specs),
        compile_seconds=compile_seconds,
        conditions_evaluated=sum(len(triggered.get(kind, ())) for kind, _ in generated),
        fired=sum(1 for _, _, fields in expected if fields is not None),
        mappings_evaluated=sum(field_count[rule] for _, rule, f in expected if f is not None),
        errors=sum(1 for _, _, fields in expected if fields is None),
        interpreter=interpreter,
        compiled=compiled_timing,
        compiled_objects=objects_timing,
        all_interpreter=all_interpreter,
        all_compiled=all_compiled,
    )


def rows(m: Measurement) -> list[Row]:
    target = f">= {TARGET_EVENTS_PER_SECOND:,} events/s"

    def judged(measurement: str, timing: Timing) -> Row:
        limit = timing.events / TARGET_EVENTS_PER_SECOND  # seconds allowed for the run
        return Row(NAME, measurement, timing.describe(), target, verdict(timing.best, limit))

    return [
        Row(NAME, "events / rules / expressions", f"{m.events:,} / {m.rules} / {m.expressions}"),
        Row(
            NAME,
            "per run: conditions / rules fired / mappings",
            f"{m.conditions_evaluated:,} / {m.fired:,} / {m.mappings_evaluated:,}",
        ),
        Row(NAME, "evaluation errors", f"{m.errors:,}"),
        Row(NAME, f"compile {m.expressions} expressions", f"{m.compile_seconds * 1000:.1f} ms"),
        Row(NAME, "interpreter (expressions.search)", m.interpreter.describe()),
        judged("compiled (Compiled.function)", m.compiled),
        judged("compiled (Compiled objects)", m.compiled_objects),
        Row(NAME, "compiled speed-up", f"{m.compiled.rate / m.interpreter.rate:.1f}x"),
        Row(NAME, f"all {m.rules} conditions/event: interpreter", m.all_interpreter.describe()),
        judged(f"all {m.rules} conditions/event: compiled", m.all_compiled),
    ]


def run(options: Options) -> list[Row]:
    return rows(measure(EVENTS, options.runs))


if __name__ == "__main__":
    from .common import render_table

    print(render_table(run(Options())))
