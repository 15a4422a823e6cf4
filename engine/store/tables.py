"""The store's tables (SQLAlchemy Core), identical on SQLite and PostgreSQL.

Times are stored as timezone-aware UTC; JSON columns hold canonical data and rendered action
payloads. The Alembic migrations in ``migrations/versions`` create exactly these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy import DateTime as _DateTime

from engine.events import MAX_ID_CHARS


class DateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, also on SQLite (which keeps no zone)."""

    impl = _DateTime(timezone=True)
    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:
        super().__init__()

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"naive or non-datetime value {value!r}; use the engine clock")
        moment = value.astimezone(UTC)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()
Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

KEYED_SQL = "replay_key IS NOT NULL"

inbox = Table(
    "inbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("delivery_id", String(MAX_ID_CHARS), nullable=False),
    Column("type", String(100), nullable=False),
    Column("subject", String(MAX_ID_CHARS)),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("data", JSON, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("config_digest", String(64)),
    # the digest of what was signed, for senders whose delivery id is not (migration 0009)
    Column("replay_key", String(80)),
    UniqueConstraint("source", "delivery_id", name="uq_inbox_delivery"),
    Index(
        "uq_inbox_replay",
        "source",
        "replay_key",
        unique=True,
        sqlite_where=text(KEYED_SQL),
        postgresql_where=text(KEYED_SQL),
    ),
)

rule_firings = Table(
    "rule_firings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, nullable=False, index=True),
    Column("rule_id", String(100), nullable=False),
    Column("config_digest", String(64), nullable=False),
    Column("matched", Boolean, nullable=False),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

CLAIMABLE = ("pending", "deferred")
"""Outbox statuses a worker may claim (``deferred``: a guardrail said "not now")."""
CLAIMABLE_SQL = " OR ".join(f"status = '{status}'" for status in CLAIMABLE)
ACTIVE = ("pending", "running")
"""Statuses that hold back a person's later actions. A "deferred" action (a guardrail said
"not now": quiet hours, the frequency cap) waits for its time without blocking the rest."""
ACTIVE_SQL = " OR ".join(f"status = '{status}'" for status in ACTIVE)
FINISHED_SQL = "finished_at IS NOT NULL"
TOUCH_SQL = "status = 'done' AND touch_category = 'nurture'"
"""Done nurture email: what the frequency cap counts."""

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, index=True),
    Column("rule_id", String(100), nullable=False),
    Column("action_index", Integer, nullable=False),
    Column("action_type", String(50), nullable=False),
    Column("ordering_key", String(320), nullable=False),
    Column("candidate_id", String(200)),
    Column("trigger", String(100), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("idempotency_key", String(400), nullable=False, unique=True),
    Column("status", String(20), nullable=False),  # pending running done dead skipped
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("result", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("touch_category", String(20)),  # nurture / transactional for candidate emails
    Column("enrollment_id", Id, index=True),  # set for sequence steps: an exit skips them
    Index("ix_outbox_due", "status", "next_attempt_at"),
    # the sync error rate: finished actions only, so an action enters it once, when it ends
    Index(
        "ix_outbox_trigger_finished",
        "trigger",
        "finished_at",
        sqlite_where=text(FINISHED_SQL),
        postgresql_where=text(FINISHED_SQL),
    ),
    # the frequency cap: the nurture email a person was sent, and nothing else
    Index(
        "ix_outbox_touches",
        "ordering_key",
        "finished_at",
        sqlite_where=text(TOUCH_SQL),
        postgresql_where=text(TOUCH_SQL),
    ),
    # what a claim walks, in id order: only the actions still waiting, however long the
    # history of done ones grows (the claim states CLAIMABLE_SQL as literals: see queries)
    Index(
        "ix_outbox_claimable",
        "id",
        sqlite_where=text(CLAIMABLE_SQL),
        postgresql_where=text(CLAIMABLE_SQL),
    ),
    # "is an earlier action of this person still open?", one probe whatever their history
    Index(
        "ix_outbox_active_order",
        "ordering_key",
        "id",
        sqlite_where=text(ACTIVE_SQL),
        postgresql_where=text(ACTIVE_SQL),
    ),
)

identity_links = Table(
    "identity_links",
    metadata,
    Column("email", String(320), primary_key=True),  # normalised
    Column("candidate_id", String(200), index=True),
    Column("contact_id", String(100), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

application_stages = Table(
    "application_stages",
    metadata,
    Column("application_id", String(200), primary_key=True),
    Column("stage_id", String(200)),
    Column("stage_name", String(300)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", String(50), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_key", String(400), nullable=False, index=True),
    Column("kind", String(50), nullable=False),
    Column("candidate_id", String(200)),
    Column("rule_id", String(100)),
    Column("action_type", String(50)),
    Column("reason", Text, nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),  # pending sent
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
    Column("samples", JSON, nullable=False),  # a few candidate ids of the grouped failures
)

pauses = Table(
    "pauses",
    metadata,
    Column("scope", String(100), primary_key=True),  # '*' for everything, else a rule id
    Column("paused_at", DateTime(timezone=True), nullable=False),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("sequence_id", String(100), nullable=False),
    Column("candidate_id", String(200), nullable=False),
    Column("key", String(300), nullable=False),  # '' when the sequence has no key
    Column("email", String(320)),
    Column("category", String(20), nullable=False),
    Column("exclusive", Boolean, nullable=False),
    Column("status", String(20), nullable=False),  # active exited completed
    Column("reason", Text),
    Column("context", JSON, nullable=False),  # the enrolling event's data, kept current
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Index("ix_enrollments_candidate", "candidate_id", "status"),
    Index("ix_enrollments_email", "email", "status"),  # a CRM event with no candidate linked
    Index(
        "uq_enrollments_active",
        "sequence_id",
        "candidate_id",
        "key",
        unique=True,
        sqlite_where=Column("status") == "active",
        postgresql_where=Column("status") == "active",
    ),
)

enrollment_steps = Table(
    "enrollment_steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("enrollment_id", Id, nullable=False, index=True),
    Column("step_id", String(100), nullable=False),
    Column("occurrence", Integer, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    # pending, then fired / skipped / failed / cancelled; no lease: a step is claimed and
    # fired in one transaction, which is its lease (a crash rolls the claim back)
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    Column("fired_at", DateTime(timezone=True)),
    UniqueConstraint("enrollment_id", "step_id", "occurrence", name="uq_step_occurrence"),
    Index("ix_steps_due", "status", "due_at"),
)

candidate_snapshots = Table(
    "candidate_snapshots",
    metadata,
    Column("candidate_id", String(200), primary_key=True),
    Column("candidate", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(200), primary_key=True),
    Column("job", JSON, nullable=False),
    Column("status", String(20)),
    Column("department", String(300)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

poll_cursors = Table(
    "poll_cursors",
    metadata,
    Column("name", String(100), primary_key=True),  # e.g. hubspot:email-events
    Column("value", String(400), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

mail_sends = Table(
    "mail_sends",
    metadata,
    # one row per candidate email sent over SMTP (mail.via: smtp), keyed like its outbox action
    Column("idempotency_key", String(400), primary_key=True),
    Column("message_id", String(1000), nullable=False),
    Column("recipient", String(320), nullable=False),
    # sending (outcome unknown until sent), sent, refused (the server said no: not delivered)
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_attempt_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
)
