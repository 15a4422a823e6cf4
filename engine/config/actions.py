"""The action catalogue: every action type a rule or a sequence step may use.

An action is written as::

    - action: crm.send_email          # the type
      params: {template: welcome-1}   # static parameters, checked per type
      fields:                         # target <- JMESPath over the event (or step context)
        to: candidate.email
        first_name: candidate.first_name

``required_fields`` must be mapped under ``fields``; ``open_fields`` says whether other targets
are allowed (CRM properties, template variables, a JSON body) or only ``known_fields``.
ATS write-backs name the record they write (``candidate_id``) so a reviewer sees it;
``sequence.*`` act on the event's subject, the candidate.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from engine.config.types import EnvVarName, Expression, FieldTarget, Identifier, Model


class NoParams(Model):
    """This action takes no static parameters."""


class UpsertContactParams(Model):
    lookup: Literal["email"] = Field(
        "email", description="contacts are looked up by normalised email before any create"
    )


class UpdateContactParams(Model):
    create_if_missing: bool = False


class AddToListParams(Model):
    list: str = Field(min_length=1, description="the CRM list (segment) name or id")


class SendEmailParams(Model):
    template: Identifier = Field(description="a template id declared under templates:")


class TagParams(Model):
    tag: str = Field(min_length=1, max_length=200)


class AddNoteParams(Model):
    body: str = Field(min_length=1, description="note text; {name} inserts the field 'name'")
    visibility: Literal["admin_only", "private", "public"] = "admin_only"


class NotifySlackParams(Model):
    target: Identifier | None = Field(None, description="an alerting target of nurture.yaml")
    text: str = Field(min_length=1, description="message; {name} inserts the field 'name'")


class NotifyEmailParams(Model):
    target: Identifier | None = Field(None, description="an alerting target of nurture.yaml")
    subject: str = Field(min_length=1)
    text: str = Field(min_length=1, description="body; {name} inserts the field 'name'")


class EnrollParams(Model):
    sequence: Identifier
    start_at_step: Identifier | None = Field(None, description="a step id of that sequence")


class ExitParams(Model):
    sequence: Identifier | Literal["*"] = Field(description="a sequence id, or '*' for all")
    reason: str = Field(min_length=1, max_length=200)


class SuppressParams(Model):
    reason: Literal["unsubscribed", "do_not_contact", "archived", "bounced", "manual"]


class HttpRequestParams(Model):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(pattern=r"^https?://", description="an http(s) URL")
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: dict[str, EnvVarName] = Field(
        default_factory=dict, description="header name -> environment variable holding its value"
    )
    timeout: float = Field(10.0, gt=0, le=120)


Fields = dict[FieldTarget, Expression]


class ActionBase(Model):
    """Common shape; each subclass pins ``action`` and ``params`` and states its fields."""

    description: str | None = None
    fields: Fields = Field(default_factory=dict)

    required_fields: ClassVar[tuple[str, ...]] = ()
    known_fields: ClassVar[tuple[str, ...]] = ()
    open_fields: ClassVar[bool] = True
    touches_candidate: ClassVar[bool] = False
    """True when the action writes to the candidate (guardrails apply before it)."""

    @property
    def type(self) -> str:
        return str(getattr(self, "action"))  # noqa: B009 - every subclass defines it


class UpsertContact(ActionBase):
    """Find the CRM contact by email, update it if found, create it otherwise."""

    action: Literal["crm.upsert_contact"]
    params: UpsertContactParams = UpsertContactParams()
    required_fields = ("email",)


class UpdateContact(ActionBase):
    """Update CRM contact properties (the contact is found by email)."""

    action: Literal["crm.update_contact"]
    params: UpdateContactParams = UpdateContactParams()
    required_fields = ("email",)


class AddToList(ActionBase):
    """Add the contact to a static CRM list."""

    action: Literal["crm.add_to_list"]
    params: AddToListParams
    required_fields = ("email",)
    known_fields = ("email",)
    open_fields = False


class SendEmail(ActionBase):
    """Send a CRM email template to the candidate; other fields are template variables."""

    action: Literal["crm.send_email"]
    params: SendEmailParams
    required_fields = ("to",)
    touches_candidate = True


class AddTag(ActionBase):
    """Add a tag to the candidate record in the ATS (created if the ATS lacks it)."""

    action: Literal["ats.add_tag"]
    params: TagParams
    required_fields = ("candidate_id",)
    known_fields = ("candidate_id",)
    open_fields = False


class RemoveTag(ActionBase):
    """Remove a tag from the candidate record in the ATS."""

    action: Literal["ats.remove_tag"]
    params: TagParams
    required_fields = ("candidate_id",)
    known_fields = ("candidate_id",)
    open_fields = False


class AddNote(ActionBase):
    """Add a note to the candidate record in the ATS."""

    action: Literal["ats.add_note"]
    params: AddNoteParams
    required_fields = ("candidate_id",)


class NotifySlack(ActionBase):
    """Post to a Slack incoming webhook (an alerting target)."""

    action: Literal["notify.slack"]
    params: NotifySlackParams


class NotifyEmail(ActionBase):
    """Send an internal email (e.g. to an interviewer); ``to`` may be a list."""

    action: Literal["notify.email"]
    params: NotifyEmailParams
    required_fields = ("to",)


class Enroll(ActionBase):
    """Enrol the event's candidate in a sequence."""

    action: Literal["sequence.enroll"]
    params: EnrollParams
    open_fields = False


class Exit(ActionBase):
    """End the candidate's enrolment in one sequence or in all ('*')."""

    action: Literal["sequence.exit"]
    params: ExitParams
    open_fields = False


class Suppress(ActionBase):
    """Put an address on the suppression list; no outbound touch reaches it afterwards."""

    action: Literal["suppress"]
    params: SuppressParams
    required_fields = ("email",)
    known_fields = ("email",)
    open_fields = False


class HttpRequest(ActionBase):
    """Call any HTTP endpoint; the fields form the JSON body."""

    action: Literal["http.request"]
    params: HttpRequestParams


ACTION_CLASSES: tuple[type[ActionBase], ...] = (
    UpsertContact,
    UpdateContact,
    AddToList,
    SendEmail,
    AddTag,
    RemoveTag,
    AddNote,
    NotifySlack,
    NotifyEmail,
    Enroll,
    Exit,
    Suppress,
    HttpRequest,
)

Action = Annotated[
    UpsertContact
    | UpdateContact
    | AddToList
    | SendEmail
    | AddTag
    | RemoveTag
    | AddNote
    | NotifySlack
    | NotifyEmail
    | Enroll
    | Exit
    | Suppress
    | HttpRequest,
    Field(discriminator="action"),
]


def action_type_of(cls: type[ActionBase]) -> str:
    """The literal ``action`` value a class accepts."""
    annotation = cls.model_fields["action"].annotation
    (value,) = annotation.__args__  # type: ignore[union-attr]
    return str(value)


ACTIONS: dict[str, type[ActionBase]] = {action_type_of(c): c for c in ACTION_CLASSES}
"""Action type name -> model class."""
