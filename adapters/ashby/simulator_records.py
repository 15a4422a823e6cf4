"""The records behind the Ashby simulator: seeding helpers and what each RPC does with them.

``adapters.ashby.simulator`` serves these over HTTP (auth, envelope, rate limit, faults); here
an RPC takes its JSON body and returns ``(results, extra envelope fields)`` or raises
``Refused`` (answered ``success: false``). Application list semantics are described in the
simulator's module docstring.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_LIMIT = 100
Reply = tuple[Any, dict[str, Any]]


def iso(moment: datetime) -> str:
    """Ashby's timestamp style: UTC with milliseconds and ``Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def encode(document: dict[str, Any]) -> str:
    """An opaque token (cursor, sync token)."""
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode("ascii")


def decode(token: Any) -> dict[str, Any] | None:
    if not isinstance(token, str):
        return None
    try:
        document = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError):
        return None
    return document if isinstance(document, dict) else None


class Refused(Exception):
    """An RPC answered ``success: false`` (HTTP 200) with this error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Records:
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    change: dict[str, int] = field(default_factory=dict)  # application id -> change number
    counter: int = 0
    generation: int = 0  # sync tokens of an older generation have expired


class AshbyRecords:
    """Seeding helpers (for tests and the demo) and the RPC handlers."""

    def __init__(self, wall: Callable[[], datetime]) -> None:
        self.wall = wall
        self.records = Records()
        self._note_ids = itertools.count(1)

    # -- seeding ----------------------------------------------------------------------------
    def add_job(self, job_id: str, title: str) -> None:
        self.records.jobs[job_id] = {"id": job_id, "title": title}

    def add_stage(self, stage_id: str, title: str, *, kind: str = "Active", order: int = 1) -> None:
        """An interview stage; ``kind`` is its ``type`` (Active, Offer, Hired, Archived...)."""
        self.records.stages[stage_id] = {
            "id": stage_id,
            "title": title,
            "type": kind,
            "orderInInterviewPlan": order,
        }

    def add_tag(self, title: str, *, tag_id: str | None = None, archived: bool = False) -> str:
        tag_id = tag_id or str(uuid.uuid4())
        self.records.tags[tag_id] = {"id": tag_id, "title": title, "isArchived": archived}
        return tag_id

    def delete_tag(self, tag_id: str) -> None:
        """A tag removed from the catalogue in Ashby's UI (and from every candidate)."""
        del self.records.tags[tag_id]
        for candidate in self.records.candidates.values():
            candidate["tags"] = [t for t in candidate["tags"] if t != tag_id]

    def add_candidate(
        self,
        candidate_id: str,
        name: str,
        emails: Sequence[str],
        *,
        tags: Sequence[str] = (),
        created_at: str = "2026-01-01T00:00:00.000Z",
    ) -> None:
        """Seed a candidate; ``tags`` are titles, added to the catalogue when missing."""
        by_title = {t["title"]: i for i, t in self.records.tags.items()}
        self.records.candidates[candidate_id] = {
            "id": candidate_id,
            "name": name,
            "emailAddresses": [
                {"value": e, "type": "Personal", "isPrimary": n == 0} for n, e in enumerate(emails)
            ],
            "phoneNumbers": [],
            "tags": [by_title.get(title) or self.add_tag(title) for title in tags],
            "createdAt": created_at,
        }

    def add_application(
        self,
        application_id: str,
        *,
        candidate: str,
        job: str,
        stage: str,
        created_at: datetime,
        status: str = "Active",
        source: str | None = None,
    ) -> None:
        """An application of a seeded candidate to a seeded job, in a seeded stage."""
        self.records.applications[application_id] = {
            "id": application_id,
            "status": status,
            "createdAt": iso(created_at),
            "updatedAt": iso(created_at),
            "candidate": candidate,
            "currentInterviewStage": stage,
            "source": {"id": f"source-{source}", "title": source} if source else None,
            "archiveReason": None,
            "archivedAt": None,
            "job": job,
        }
        self._changed(application_id)

    def load_application(self, document: Mapping[str, Any]) -> None:
        """Seed from a webhook's ``data.application`` (e.g. a contract example), as is."""
        app = copy.deepcopy(dict(document))
        person, stage, job = app["candidate"], app["currentInterviewStage"], app["job"]
        if person["id"] not in self.records.candidates:
            self.add_candidate(
                person["id"], person["name"], [person["primaryEmailAddress"]["value"]]
            )
        self.records.stages[stage["id"]] = dict(stage)
        self.records.jobs[job["id"]] = dict(job)
        app.update(candidate=person["id"], currentInterviewStage=stage["id"], job=job["id"])
        self.records.applications[app["id"]] = app
        self._changed(app["id"])

    def move_stage(self, application_id: str, stage: str, at: datetime) -> None:
        self.touch(application_id, at, currentInterviewStage=stage)

    def archive(self, application_id: str, stage: str, reason: str, at: datetime) -> None:
        """Archive (reject) into ``stage`` with an archive reason titled ``reason``."""
        self.touch(
            application_id,
            at,
            status="Archived",
            currentInterviewStage=stage,
            archiveReason={"id": f"reason-{reason}", "text": reason, "reasonType": "RejectedByOrg"},
            archivedAt=iso(at),
        )

    def hire(self, application_id: str, stage: str, at: datetime) -> None:
        self.touch(application_id, at, status="Hired", currentInterviewStage=stage)

    def touch(self, application_id: str, at: datetime, **fields: Any) -> None:
        """Any change to an application: it moves to the end of the change order."""
        self.records.applications[application_id].update(fields, updatedAt=iso(at))
        self._changed(application_id)

    def _changed(self, application_id: str) -> None:
        self.records.counter += 1
        self.records.change[application_id] = self.records.counter

    def expire_sync_tokens(self) -> None:
        self.records.generation += 1

    def tags_of(self, candidate_id: str) -> list[str]:
        tags = self.records.tags
        return [tags[t]["title"] for t in self.records.candidates[candidate_id]["tags"]]

    # -- rendering --------------------------------------------------------------------------
    def candidate(self, candidate_id: str) -> dict[str, Any]:
        candidate = copy.deepcopy(self.records.candidates[candidate_id])
        addresses = candidate["emailAddresses"]
        candidate["primaryEmailAddress"] = addresses[0] if addresses else None
        candidate["tags"] = [dict(self.records.tags[t]) for t in candidate["tags"]]
        return candidate

    def application(self, application_id: str) -> dict[str, Any]:
        app = copy.deepcopy(self.records.applications[application_id])
        person = self.records.candidates[app["candidate"]]
        app["candidate"] = {
            "id": person["id"],
            "name": person["name"],
            "primaryEmailAddress": (person["emailAddresses"] or [None])[0],
        }
        app["currentInterviewStage"] = dict(self.records.stages[app["currentInterviewStage"]])
        app["job"] = dict(self.records.jobs[app["job"]])
        return app

    # -- RPCs -------------------------------------------------------------------------------
    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Reply]]:
        return {
            "candidate.search": self._search,
            "candidate.info": self._info,
            "candidateTag.list": self._list_tags,
            "candidateTag.create": self._create_tag,
            "candidate.addTag": self._add_tag,
            "candidate.removeTag": self._remove_tag,
            "candidate.createNote": self._create_note,
            "application.list": self._list_applications,
        }

    @staticmethod
    def _text(body: dict[str, Any], key: str) -> str:
        value = body.get(key)
        if not isinstance(value, str) or not value.strip():
            raise Refused("invalid_input")
        return value

    @staticmethod
    def _limit(body: dict[str, Any]) -> int:
        limit = body.get("limit", MAX_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise Refused("invalid_input")
        return max(1, min(limit, MAX_LIMIT))

    def _person(self, body: dict[str, Any], key: str = "candidateId") -> dict[str, Any]:
        candidate = self.records.candidates.get(self._text(body, key))
        if candidate is None:
            raise Refused("candidate_not_found")
        return candidate

    def _search(self, body: dict[str, Any]) -> Reply:
        email, name = body.get("email"), body.get("name")
        if not isinstance(email, str) and not isinstance(name, str):
            raise Refused("invalid_input")

        def matches(person: dict[str, Any]) -> bool:
            addresses = [a["value"].lower() for a in person["emailAddresses"]]
            if isinstance(email, str) and email.lower() in addresses:
                return True
            return isinstance(name, str) and name.lower() in person["name"].lower()

        return [self.candidate(c["id"]) for c in self.records.candidates.values() if matches(c)], {}

    def _info(self, body: dict[str, Any]) -> Reply:
        return self.candidate(self._person(body, "id")["id"]), {}

    def _list_tags(self, body: dict[str, Any]) -> Reply:
        tags = sorted(self.records.tags.values(), key=lambda t: t["id"])
        limit, start = self._limit(body), 0
        if body.get("cursor") is not None:
            position = decode(body["cursor"])
            if position is None or not isinstance(position.get("offset"), int):
                raise Refused("invalid_cursor")
            start = position["offset"]
        more = start + limit < len(tags)
        extra: dict[str, Any] = {"moreDataAvailable": more}
        if more:
            extra["nextCursor"] = encode({"offset": start + limit})
        return [dict(t) for t in tags[start : start + limit]], extra

    def _create_tag(self, body: dict[str, Any]) -> Reply:
        tag_id = self.add_tag(self._text(body, "title").strip())
        return dict(self.records.tags[tag_id]), {}

    def _tag(self, body: dict[str, Any]) -> str:
        tag_id = self._text(body, "tagId")
        if tag_id not in self.records.tags:
            raise Refused("tag_not_found")
        return tag_id

    def _add_tag(self, body: dict[str, Any]) -> Reply:
        candidate, tag_id = self._person(body), self._tag(body)
        if tag_id not in candidate["tags"]:
            candidate["tags"].append(tag_id)
        return self.candidate(candidate["id"]), {}

    def _remove_tag(self, body: dict[str, Any]) -> Reply:
        candidate, tag_id = self._person(body), self._tag(body)
        candidate["tags"] = [t for t in candidate["tags"] if t != tag_id]
        return self.candidate(candidate["id"]), {}

    def _create_note(self, body: dict[str, Any]) -> Reply:
        candidate = self._person(body)
        note = body.get("note")
        value = note.get("value") if isinstance(note, dict) else note
        if not isinstance(value, str) or not value.strip():
            raise Refused("invalid_input")
        created = {
            "id": f"note-{next(self._note_ids)}",
            "content": value,
            "createdAt": iso(self.wall()),
            "sendNotifications": body.get("sendNotifications") is True,
        }
        self.records.notes.setdefault(candidate["id"], []).append(created)
        return {k: created[k] for k in ("id", "content", "createdAt")}, {}

    def _list_applications(self, body: dict[str, Any]) -> Reply:
        limit, since = self._limit(body), 0
        if body.get("syncToken") is not None:
            token = decode(body["syncToken"])
            if token is None or not isinstance(token.get("s"), int):
                raise Refused("invalid_sync_token")
            if token.get("g") != self.records.generation:
                raise Refused("sync_token_expired")
            since = token["s"]
        after = since
        if body.get("cursor") is not None:
            cursor = decode(body["cursor"])
            if cursor is None or not isinstance(cursor.get("after"), int):
                raise Refused("invalid_cursor")
            after = max(after, cursor["after"])
        changed = sorted((n, app_id) for app_id, n in self.records.change.items() if n > after)
        page = changed[:limit]
        results = [self.application(app_id) for _, app_id in page]
        if len(changed) > limit:
            return results, {
                "moreDataAvailable": True,
                "nextCursor": encode({"after": page[-1][0]}),
            }
        token_doc = {"g": self.records.generation, "s": self.records.counter}
        return results, {"moreDataAvailable": False, "syncToken": encode(token_doc)}
