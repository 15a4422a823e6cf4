"""Benchmark: validate N generated rule files (issue target: 1,000 files in under 2 seconds).

The files are written to a temporary directory (spread over team sub-directories, as a real
``rules/`` tree is), then:

* ``engine.config.load.load_config([dir])`` -- the loader ``nurture validate`` calls -- is timed
  in this process ``runs`` times (the first run also pays one-time costs such as building the
  JSON Schemas, so "best" is the warm figure and "first" the cold one);
* the real command ``nurture validate DIR`` is timed once as a subprocess, interpreter start-up
  and imports included: that is the number a user waits for.

Every generated rule is valid; a run whose loader reports any error fails loudly with the first
diagnostics instead of printing a timing for a config that did not validate.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.config.load import LoadResult, load_config

from .common import Options, Row, verdict

NAME = "validate"
TARGET_SECONDS = 2.0
SEED = 20240611

# -- the generated config --------------------------------------------------------------------

TEAMS: dict[str, tuple[str, ...]] = {
    "engineering": (
        "Backend Engineer",
        "Frontend Engineer",
        "Site Reliability Engineer",
        "Engineering Manager",
    ),
    "data": ("Data Scientist", "Analytics Engineer", "Machine Learning Engineer"),
    "design": ("Product Designer", "UX Researcher"),
    "sales": ("Account Executive", "Sales Development Representative", "Solutions Engineer"),
    "marketing": ("Content Marketer", "Growth Marketing Manager"),
    "people": ("Technical Recruiter", "People Partner"),
    "support": ("Customer Support Specialist", "Support Engineer"),
    "operations": ("Finance Analyst", "Office Manager"),
}
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
SOURCES = ("LinkedIn", "Referral", "Careers Page", "Agency", "Job Board")
INTERVIEW_KINDS = ("Phone Screen", "Technical", "System Design", "Culture Add", "Panel")


@dataclass(frozen=True)
class _Pick:
    """The random choices one rule is written from."""

    rng: random.Random
    team: str
    department: str
    title: str
    stage: str
    source: str


def _tag(tag: str) -> dict[str, object]:
    return {
        "action": "ats.add_tag",
        "params": {"tag": tag},
        "fields": {"candidate_id": "candidate.id"},
    }


def _untag(tag: str) -> dict[str, object]:
    return {
        "action": "ats.remove_tag",
        "params": {"tag": tag},
        "fields": {"candidate_id": "candidate.id"},
    }


def _note(body: str, visibility: str | None = None, **fields: str) -> dict[str, object]:
    params: dict[str, object] = {"body": body}
    if visibility is not None:
        params["visibility"] = visibility
    return {
        "action": "ats.add_note",
        "params": params,
        "fields": {"candidate_id": "candidate.id", **fields},
    }


def _slack(text: str, **fields: str) -> dict[str, object]:
    return {"action": "notify.slack", "params": {"text": text}, "fields": dict(fields)}


def _contact(action: str, email: str, extras: dict[str, str], pick: _Pick) -> dict[str, object]:
    """A CRM write: ``email`` plus a random, non-empty subset of ``extras`` (in their order)."""
    chosen = set(pick.rng.sample(sorted(extras), pick.rng.randint(1, len(extras))))
    fields = {"email": email, **{k: v for k, v in extras.items() if k in chosen}}
    return {"action": action, "fields": fields}


Recipe = Callable[[_Pick], tuple[str, dict[str, object]]]


def _new_applicant(p: _Pick) -> tuple[str, dict[str, object]]:
    condition = f"candidate.email != `null` && application.job.department == '{p.department}'"
    if p.rng.random() < 0.5:
        condition += f" && application.source == '{p.source}'"
    return "new-applicant-to-crm", {
        "description": f"Create or update the CRM contact of every new {p.department} applicant",
        "trigger": "ats.application.created",
        "condition": condition,
        "actions": [
            _contact(
                "crm.upsert_contact",
                "candidate.email",
                {
                    "firstname": "candidate.first_name",
                    "lastname": "candidate.last_name",
                    "applied_job": "application.job.title",
                    "lead_source": "application.source",
                    "time_zone": "candidate.time_zone",
                    "ats_url": "candidate.url",
                },
                p,
            ),
            _tag(f"crm-{p.team}"),
        ],
    }


def _referral(p: _Pick) -> tuple[str, dict[str, object]]:
    return "referral-applicant", {
        "description": f"Tell the {p.team} channel about referrals for {p.title}",
        "trigger": "ats.application.created",
        "condition": f"application.source == 'Referral' && application.job.title == '{p.title}'",
        "actions": [
            _slack(
                "Referral for {job}: {name} (recruiter {recruiter})",
                job="application.job.title",
                name="join(' ', [candidate.first_name, candidate.last_name])",
                recruiter="application.recruiter.email",
            ),
            _note(
                "Referred candidate; fast-track the {stage} stage.",
                "private",
                stage="application.stage.name",
            ),
        ],
    }


def _stage_alert(p: _Pick) -> tuple[str, dict[str, object]]:
    return "stage-alert", {
        "description": f"Announce {p.department} candidates entering {p.stage}",
        "trigger": "ats.application.stage_changed",
        "condition": f"application.stage.name == '{p.stage}' && "
        f"application.previous_stage.name != '{p.stage}'",
        "actions": [
            _slack(
                "{name} moved to {stage} for {job}",
                name="candidate.first_name",
                stage="application.stage.name",
                job="application.job.title",
            ),
            _contact(
                "crm.update_contact",
                "candidate.email",
                {
                    "hiring_stage": "application.stage.name",
                    "previous_hiring_stage": "application.previous_stage.name",
                    "recruiter_email": "application.recruiter.email",
                },
                p,
            ),
        ],
    }


def _silver_medalist(p: _Pick) -> tuple[str, dict[str, object]]:
    return "silver-medalist", {
        "description": f"Keep late-stage {p.department} rejections warm as silver medalists",
        "trigger": "ats.application.rejected",
        "condition": "application.rejection_reason.type == 'We rejected them' && "
        'contains(`["Final Interview", "Offer"]`, application.previous_stage.name)',
        "actions": [
            _tag(f"silver-medalist-{p.team}"),
            {
                "action": "crm.add_to_list",
                "params": {"list": f"Silver medalists {p.department}"},
                "fields": {"email": "candidate.email"},
            },
            _note(
                "Silver medalist for {job}, rejected at {stage}.",
                job="application.job.title",
                stage="application.previous_stage.name",
            ),
        ],
    }


def _hired(p: _Pick) -> tuple[str, dict[str, object]]:
    return "hired-announcement", {
        "description": f"Celebrate {p.department} hires and close their nurture profile",
        "trigger": "ats.application.hired",
        "condition": f"application.job.department == '{p.department}'",
        "actions": [
            _slack(
                "{first} {last} accepted the {job} offer in {location}",
                first="candidate.first_name",
                last="candidate.last_name",
                job="application.job.title",
                location="application.job.location",
            ),
            _contact(
                "crm.update_contact",
                "candidate.email",
                {
                    "hired_at": "application.hired_at",
                    "candidate_status": "'hired'",
                    "hired_job_id": "application.job.id",
                },
                p,
            ),
            _untag("open-to-opportunities"),
        ],
    }


def _interview_scheduled(p: _Pick) -> tuple[str, dict[str, object]]:
    kind = p.rng.choice(INTERVIEW_KINDS)
    actions: list[dict[str, object]] = [
        _note(
            "{title} on {start} ({tz}); join at {link}",
            title="interview.title",
            start="interview.start_at",
            tz="interview.time_zone",
            link="interview.video_url",
        ),
        _tag("interview-scheduled"),
    ]
    if p.rng.random() < 0.5:
        actions.append(
            _slack(
                "{kind} for {job}: {candidate} with {panel}",
                kind="interview.title",
                job="application.job.title",
                candidate="candidate.first_name",
                panel="join(', ', interview.interviewers[*].email)",
            )
        )
    return "interview-scheduled", {
        "description": f"Log {kind} interviews for {p.title} on the candidate",
        "trigger": "ats.interview.scheduled",
        "condition": f"interview.status == 'scheduled' && interview.video_url != `null` && "
        f"contains(interview.title || '', '{kind}')",
        "actions": actions,
    }


def _interview_moved(p: _Pick) -> tuple[str, dict[str, object]]:
    return "interview-rescheduled", {
        "description": f"Warn the {p.team} panel when an interview moves",
        "trigger": "ats.interview.rescheduled",
        "condition": "interview.previous_start_at != `null` && "
        f"application.job.department == '{p.department}'",
        "actions": [
            _slack(
                "{name}'s {title} moved from {old} to {new}",
                name="candidate.first_name",
                title="interview.title",
                old="interview.previous_start_at",
                new="interview.start_at",
                panel="interview.interviewers[*].email",
            ),
            _note(
                "Rescheduled: was {old}, now {new}",
                old="interview.previous_start_at",
                new="interview.start_at",
            ),
        ],
    }


def _interview_cancelled(p: _Pick) -> tuple[str, dict[str, object]]:
    return "interview-cancelled", {
        "description": "Clear the interview tag when an interview is cancelled",
        "trigger": "ats.interview.cancelled",
        "actions": [
            _untag("interview-scheduled"),
            _note(
                "Interview {id} ({title}) was cancelled",
                "private",
                id="interview.id",
                title="interview.title",
            ),
        ],
    }


def _feedback(p: _Pick) -> tuple[str, dict[str, object]]:
    strong = p.rng.choice(("strong_yes", "strong_no"))
    return "strong-feedback", {
        "description": f"Flag {strong.replace('_', ' ')} feedback on {p.department} candidates",
        "trigger": "ats.feedback.submitted",
        "condition": f"feedback.recommendation == '{strong}' && "
        f"application.job.department == '{p.department}'",
        "actions": [
            _slack(
                "{interviewer} submitted {rec} for {candidate} ({job})",
                interviewer="feedback.interviewer.name",
                rec="feedback.recommendation",
                candidate="candidate.first_name",
                job="application.job.title",
            ),
            _tag(strong.replace("_", "-")),
        ],
    }


def _contact_sync(p: _Pick) -> tuple[str, dict[str, object]]:
    return "contact-sync", {
        "description": "Mirror candidate profile changes to the CRM contact",
        "trigger": "ats.candidate.updated",
        "condition": "candidate.email != `null` && candidate.can_email && "
        "!(candidate.do_not_contact)",
        "actions": [
            _contact(
                "crm.update_contact",
                "lower(trim(candidate.email))",
                {
                    "phone": "candidate.phone",
                    "time_zone": "candidate.time_zone",
                    "segment": "candidate.segment",
                    "ats_tags": "join(',', candidate.tags)",
                    "last_activity": "candidate.last_activity_at",
                },
                p,
            ),
        ],
    }


def _stale(p: _Pick) -> tuple[str, dict[str, object]]:
    days = p.rng.choice((90, 180, 365))
    return "stale-candidate", {
        "description": f"Mark candidates without activity for {days} days as passive",
        "trigger": "ats.candidate.updated",
        "condition": f"days_since(candidate.last_activity_at) > `{days}` && "
        "candidate.segment != 'archived'",
        "enabled": p.rng.random() < 0.8,
        "actions": [
            _tag(f"stale-{days}d"),
            _contact(
                "crm.update_contact",
                "candidate.email",
                {
                    "segment": "'passive'",
                    "days_inactive": "days_since(candidate.last_activity_at)",
                },
                p,
            ),
        ],
    }


def _erased(p: _Pick) -> tuple[str, dict[str, object]]:
    trigger = p.rng.choice(("ats.candidate.deleted", "ats.candidate.anonymized"))
    what = trigger.rsplit(".", 1)[1]
    return f"candidate-{what}", {
        "description": f"Propagate the {what} candidate to the CRM (GDPR)",
        "trigger": trigger,
        "condition": "candidate.email != `null`",
        "actions": [
            {
                "action": "crm.update_contact",
                "params": {"create_if_missing": False},
                "fields": {"email": "candidate.email", "gdpr_erased": "`true`"},
            },
            _slack("Candidate {id} was {what} in the ATS", id="candidate.id", what=f"'{what}'"),
        ],
    }


def _job_click(p: _Pick) -> tuple[str, dict[str, object]]:
    return "job-link-clicked", {
        "description": f"Note on the candidate when they open a {p.team} job from a nurture email",
        "trigger": "crm.email.clicked",
        "condition": f"candidate != `null` && email.url != `null` && "
        f"contains(email.url, '/jobs/{p.team}')",
        "actions": [
            _note('Clicked {url} in "{subject}"', url="email.url", subject="email.subject"),
            _contact(
                "crm.update_contact",
                "contact.email",
                {
                    "last_clicked_url": "email.url",
                    "last_clicked_at": "email.occurred_at",
                },
                p,
            ),
        ],
    }


def _nurture_open(p: _Pick) -> tuple[str, dict[str, object]]:
    return "nurture-opened", {
        "description": "Record the last nurture email a contact opened",
        "trigger": "crm.email.opened",
        "condition": "email.template != `null` && starts_with(email.template, 'nurture-')",
        "actions": [
            _contact(
                "crm.update_contact",
                "contact.email",
                {
                    "last_nurture_open": "email.occurred_at",
                    "last_nurture_template": "email.template",
                    "last_nurture_subject": "email.subject",
                },
                p,
            ),
        ],
    }


def _unsubscribed(p: _Pick) -> tuple[str, dict[str, object]]:
    return "unsubscribed", {
        "description": "Tag candidates who unsubscribe so recruiters see it in the ATS",
        "trigger": "crm.contact.unsubscribed",
        "condition": "candidate != `null`",
        "actions": [
            _tag("unsubscribed"),
            _note(
                "Unsubscribed from {list} (source {source})",
                list="subscription.name",
                source="subscription.source",
            ),
        ],
    }


def _keep_posted(p: _Pick) -> tuple[str, dict[str, object]]:
    return "keep-me-posted", {
        "description": f"Candidates asking to hear about {p.department} roles",
        "trigger": "link.clicked",
        "condition": "link.name == 'keep-me-posted'",
        "actions": [
            {
                "action": "crm.upsert_contact",
                "fields": {
                    "email": "candidate.email",
                    "firstname": "candidate.first_name",
                    "keep_me_posted": "`true`",
                    "interested_in": f"'{p.department}'",
                    "clicked_at": "link.clicked_at",
                },
            },
            _tag("keep-me-posted"),
        ],
    }


RECIPES: tuple[Recipe, ...] = (
    _new_applicant,
    _referral,
    _stage_alert,
    _silver_medalist,
    _hired,
    _interview_scheduled,
    _interview_moved,
    _interview_cancelled,
    _feedback,
    _contact_sync,
    _stale,
    _erased,
    _job_click,
    _nurture_open,
    _unsubscribed,
    _keep_posted,
)


# -- a small YAML emitter (block style, the way people write these files) ---------------------

_PLAIN = re.compile(r"[A-Za-z_][^#\n\t]*")
_RESOLVES = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    text = str(value)
    plain = (
        _PLAIN.fullmatch(text) is not None
        and ": " not in text
        and not text.endswith((":", " "))
        and text.lower() not in _RESOLVES
    )
    return text if plain else json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def to_yaml(node: object, indent: int = 0) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list) and value:
                lines.append(f"{pad}{key}:")
                lines.extend(to_yaml(value, indent + 2))
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}")
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list) and item:
                inner = to_yaml(item, indent + 2)
                inner[0] = f"{pad}- {inner[0][indent + 2 :]}"
                lines.extend(inner)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(node))
    return lines


@dataclass(frozen=True)
class Generated:
    files: int
    rules: int


def generate(directory: Path, count: int, seed: int = SEED) -> Generated:
    """Write ``count`` rule files (1-3 rules each, ids unique across all files) under team dirs."""
    rng = random.Random(seed)
    teams = sorted(TEAMS)
    rules = 0
    for index in range(count):
        team = teams[index % len(teams)]
        file_rules: list[dict[str, object]] = []
        for number in range(1, rng.randint(1, 3) + 1):
            pick = _Pick(
                rng,
                team,
                team.capitalize(),
                rng.choice(TEAMS[team]),
                rng.choice(STAGES),
                rng.choice(SOURCES),
            )
            slug, body = rng.choice(RECIPES)(pick)
            file_rules.append({"id": f"{team}-{slug}-{index:04d}-{number}", **body})
        rules += len(file_rules)
        first_slug = str(file_rules[0]["id"]).split("-", 1)[1].rsplit("-", 2)[0]
        path = directory / team / f"{index:04d}-{first_slug}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = [f"# {team} rules, generated by tests/bench (file {index + 1} of {count})"]
        text = "\n".join([*header, *to_yaml({"version": 1, "rules": file_rules})]) + "\n"
        path.write_text(text, encoding="utf-8")
    return Generated(count, rules)


# -- the measurement -----------------------------------------------------------------------------


class ValidationFailed(AssertionError):
    """The loader (or the CLI) reported errors on the generated files."""


@dataclass(frozen=True)
class Measurement:
    generated: Generated
    loaded_files: int
    loaded_rules: int
    errors: int
    warnings: int
    seconds: list[float]  # one in-process load_config per run, in run order
    cli_seconds: float | None
    cli_exit: int | None
    startup_seconds: float | None

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def _check(result: LoadResult, generated: Generated) -> None:
    if result.errors:
        shown = "\n".join(d.format_text() for d in result.errors[:10])
        message = (
            f"load_config reported {len(result.errors)} error(s) on the generated files; "
            f"the first ones:\n{shown}"
        )
        print(message, file=sys.stderr)
        raise ValidationFailed(message)
    rules = sum(report.rules for report in result.files)
    if len(result.files) != generated.files or rules != generated.rules:
        raise ValidationFailed(
            f"generated {generated.files} files / {generated.rules} rules but the loader saw "
            f"{len(result.files)} files / {rules} rules"
        )


def _nurture_command() -> list[str]:
    """The ``nurture`` console script beside this interpreter, else ``python -m engine.cli``."""
    script = Path(sys.executable).with_name("nurture")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "engine.cli"]


def _timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done


def measure(files: int, runs: int, *, cli: bool = True) -> Measurement:
    """Generate ``files`` rule files, time ``runs`` in-process loads and (optionally) the CLI."""
    if files < 1 or runs < 1:
        raise ValueError("files and runs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        directory = Path(tmp) / "rules"
        generated = generate(directory, files)
        seconds: list[float] = []
        result: LoadResult | None = None
        for _ in range(runs):
            start = time.perf_counter()
            result = load_config([directory])
            seconds.append(time.perf_counter() - start)
            _check(result, generated)
        assert result is not None
        cli_seconds = startup_seconds = None
        cli_exit = None
        if cli:
            command = _nurture_command()
            startup_seconds, _ = _timed([*command, "--help"])
            cli_seconds, done = _timed([*command, "validate", str(directory)])
            cli_exit = done.returncode
            if done.returncode not in (0, 3):  # 3 = warnings only, still a valid config
                tail = "\n".join((done.stdout + done.stderr).splitlines()[:20])
                print(tail, file=sys.stderr)
                raise ValidationFailed(f"nurture validate exited {done.returncode}:\n{tail}")
        return Measurement(
            generated=generated,
            loaded_files=len(result.files),
            loaded_rules=sum(report.rules for report in result.files),
            errors=len(result.errors),
            warnings=len(result.warnings),
            seconds=seconds,
            cli_seconds=cli_seconds,
            cli_exit=cli_exit,
            startup_seconds=startup_seconds,
        )


def rows(m: Measurement) -> list[Row]:
    target = f"< {TARGET_SECONDS:g} s"
    runs = len(m.seconds)
    out = [
        Row(NAME, "files", str(m.loaded_files)),
        Row(NAME, "rules", str(m.loaded_rules)),
        Row(
            NAME,
            "errors / warnings",
            f"{m.errors} / {m.warnings}",
            "0 errors",
            "PASS" if m.errors == 0 else "FAIL",
        ),
        Row(
            NAME,
            f"load_config, best of {runs}",
            f"{m.best:.3f} s",
            target,
            verdict(m.best, TARGET_SECONDS),
        ),
        Row(
            NAME,
            f"load_config, median of {runs}",
            f"{m.median:.3f} s",
            target,
            verdict(m.median, TARGET_SECONDS),
        ),
        Row(NAME, "load_config, first (cold) run", f"{m.seconds[0]:.3f} s"),
        Row(NAME, "files/s (best run)", f"{m.loaded_files / m.best:,.0f}"),
    ]
    if m.cli_seconds is not None:
        out.append(
            Row(
                NAME,
                "nurture validate DIR (subprocess, incl. start-up)",
                f"{m.cli_seconds:.3f} s",
                target,
                verdict(m.cli_seconds, TARGET_SECONDS),
            )
        )
    if m.startup_seconds is not None:
        out.append(Row(NAME, "start-up alone (nurture --help)", f"{m.startup_seconds:.3f} s"))
    return out


def run(options: Options) -> list[Row]:
    return rows(measure(options.files, options.runs))
