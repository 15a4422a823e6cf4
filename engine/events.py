"""Canonical events: the only shape of data that rules, sequences and the engine ever see.

An event is a CloudEvents-1.0-shaped envelope (``id``, ``source``, ``type``, ``time``,
``subject`` = the ATS candidate id, ``data``). Adapters turn vendor payloads into these; rules
address ``data`` with JMESPath (``candidate.email``, ``application.stage.name``).

The models here are the single source of truth for ``schema/events/*.schema.json`` and for the
typed-mapping check of ``nurture validate``: a field that is not declared here does not exist.
Vendor fields without a canonical home stay reachable under ``data.raw``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(_Model):
    """A recruiter, interviewer or other ATS user."""

    id: str | None = None
    name: str | None = None
    email: str | None = None


class Stage(_Model):
    """An interview-plan stage of an application."""

    id: str | None = None
    name: str


class Job(_Model):
    """A job (requisition) that applications are for and that nurture emails may point to."""

    id: str
    title: str
    department: str | None = None
    location: str | None = None
    status: Literal["open", "closed", "draft"] | None = None
    url: str | None = None


class RejectionReason(_Model):
    name: str
    type: str | None = Field(None, description="e.g. 'We rejected them' or 'They rejected us'")


# the longest event id (a vendor's delivery id) and subject the store keeps, in characters
MAX_ID_CHARS = 200

Segment = Literal["active", "silver_medalist", "passive", "archived"]


class Candidate(_Model):
    """A person in the ATS. ``email`` is the primary address, lower-cased and trimmed."""

    id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    emails: list[str] = Field(default_factory=list)
    phone: str | None = None
    time_zone: str | None = Field(None, description="IANA zone, e.g. Europe/Berlin")
    tags: list[str] = Field(default_factory=list)
    can_email: bool = True
    do_not_contact: bool = False
    segment: Segment | None = Field(
        None, description="hygiene bucket: active, silver_medalist, passive or archived"
    )
    url: str | None = None
    created_at: datetime | None = None
    last_activity_at: datetime | None = None
    last_contacted_at: datetime | None = None


class Application(_Model):
    """One candidate's application to one job."""

    id: str
    status: Literal["active", "rejected", "hired", "withdrawn"]
    prospect: bool = False
    job: Job | None = None
    stage: Stage | None = None
    previous_stage: Stage | None = Field(
        None, description="the stage the engine last saw (vendors such as Greenhouse omit it)"
    )
    recruiter: Person | None = None
    source: str | None = None
    applied_at: datetime | None = None
    rejected_at: datetime | None = None
    hired_at: datetime | None = None
    rejection_reason: RejectionReason | None = None


class Interview(_Model):
    id: str
    title: str | None = None
    start_at: datetime
    end_at: datetime
    time_zone: str | None = None
    location: str | None = None
    video_url: str | None = None
    interviewers: list[Person] = Field(default_factory=list)
    status: Literal["scheduled", "cancelled", "completed"] = "scheduled"
    previous_start_at: datetime | None = Field(None, description="set on a reschedule")


class Feedback(_Model):
    id: str
    interview_id: str | None = None
    interviewer: Person | None = None
    submitted_at: datetime
    recommendation: Literal["strong_yes", "yes", "no", "strong_no", "no_decision"] | None = None


class Contact(_Model):
    """A CRM contact."""

    id: str | None = None
    email: str


class EmailMessage(_Model):
    """A marketing or transactional email the CRM sent, as seen in an engagement event."""

    id: str
    template: str | None = Field(None, description="nurture template id, when we sent it")
    subject: str | None = None
    url: str | None = Field(None, description="the link clicked (clicks only)")
    occurred_at: datetime


class Subscription(_Model):
    id: str | None = None
    name: str | None = None
    source: str | None = None
    occurred_at: datetime


class Link(_Model):
    """One of our signed one-click links, e.g. 'keep-me-posted'."""

    name: str
    clicked_at: datetime
    sequence: str | None = None
    step: str | None = None


Raw = dict[str, Any]
_RAW: Any = Field(default_factory=dict, description="the vendor payload, for fields with no home")


class ApplicationEventData(_Model):
    candidate: Candidate
    application: Application
    raw: Raw = _RAW


class InterviewEventData(_Model):
    candidate: Candidate
    application: Application
    interview: Interview
    raw: Raw = _RAW


class FeedbackEventData(_Model):
    candidate: Candidate
    application: Application
    interview: Interview | None = None
    feedback: Feedback
    raw: Raw = _RAW


class CandidateEventData(_Model):
    candidate: Candidate
    raw: Raw = _RAW


class EmailEventData(_Model):
    """``candidate`` is filled in from the ATS<->CRM identity link when one is known."""

    contact: Contact
    email: EmailMessage
    candidate: Candidate | None = None
    raw: Raw = _RAW


class UnsubscribeEventData(_Model):
    contact: Contact
    subscription: Subscription
    candidate: Candidate | None = None
    raw: Raw = _RAW


class LinkEventData(_Model):
    link: Link
    candidate: Candidate
    raw: Raw = _RAW


EVENT_DATA: dict[str, type[_Model]] = {
    "ats.application.created": ApplicationEventData,
    "ats.application.stage_changed": ApplicationEventData,
    "ats.application.rejected": ApplicationEventData,
    "ats.application.hired": ApplicationEventData,
    "ats.interview.scheduled": InterviewEventData,
    "ats.interview.rescheduled": InterviewEventData,
    "ats.interview.cancelled": InterviewEventData,
    "ats.feedback.submitted": FeedbackEventData,
    "ats.candidate.updated": CandidateEventData,
    "ats.candidate.deleted": CandidateEventData,
    "ats.candidate.anonymized": CandidateEventData,
    "crm.email.opened": EmailEventData,
    "crm.email.clicked": EmailEventData,
    "crm.contact.unsubscribed": UnsubscribeEventData,
    "link.clicked": LinkEventData,
}
"""Every canonical event type and the model of its ``data``."""

EVENT_TYPES: tuple[str, ...] = tuple(sorted(EVENT_DATA))


class Event(_Model):
    """The envelope. ``(source, id)`` is the delivery identity used for de-duplication."""

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="e.g. ats/greenhouse, crm/hubspot")
    type: str
    time: datetime
    subject: str | None = Field(None, description="the ATS candidate id, when known")
    data: dict[str, Any]

    @property
    def dedup_key(self) -> tuple[str, str]:
        return (self.source, self.id)


class StepContext(_Model):
    """What a sequence step's condition and mappings see when the step fires.

    The engine assembles it at fire time from the candidate's current records, so that a
    step decides on today's data, not on the data of the day the candidate was enrolled.
    """

    candidate: Candidate
    application: Application | None = None
    interview: Interview | None = None
    contact: Contact | None = None
    matching_roles: list[Job] = Field(
        default_factory=list, description="open jobs that match the candidate's last application"
    )
    enrollment: Enrollment


class Enrollment(_Model):
    sequence: str
    key: str | None = None
    started_at: datetime
    step: str
    occurrence: int = Field(ge=0, description="0 for the first firing of a step, then 1, 2, ...")


StepContext.model_rebuild()
