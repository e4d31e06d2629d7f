"""Notes on a call: what the agent recorded (reason, result, comment) and what the call belongs to
(contact, task, ticket), edited over the API with optimistic concurrency.

No web or gRPC imports here: :mod:`telecrm_calls.notes_api` and :mod:`telecrm_calls.grpc` sit on
:class:`CallNotesService`.

The rules:

- an update names the fields it changes (the field mask; the six of :data:`NOTE_FIELDS`); an empty or
  absent value clears the field; leading and trailing whitespace is dropped;
- reason and result are one of the configured lists when a list is configured (free text otherwise); a
  value a list no longer holds is kept as long as the update leaves it as it is;
- lengths are counted in characters (:data:`MAX_LENGTHS`); control characters are refused (422 /
  INVALID_ARGUMENT naming the field), except newline and tab in the comment (CR LF and CR become LF):
  refused rather than stripped so that nothing the agent typed is silently changed, and NUL, which
  PostgreSQL cannot store, never reaches the database. Markup is data, stored as typed: clients escape;
- ``notes_version`` increases with every update that changes something (an update that changes nothing
  changes nothing, version included); an update may say which version it was made on and is refused
  (:class:`NotesConflict`, carrying the current version) when the notes moved on since;
- changing a link (contact, task, ticket) sets ``links_edited``: ingestion stops taking the links from
  the click-to-call context and the numbers registry for that call;
- an ended call's change is published (``calls.record.updated``, changed ``notes``, plus ``links`` when
  a link changed) in the same transaction (:func:`telecrm_calls.record_events.stage_record_event`); a
  live call's change waits for the ``created`` event its end publishes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_calls import repository
from telecrm_calls.models import Call, utcnow
from telecrm_calls.record_events import CHANGED_LINKS, CHANGED_NOTES, stage_record_event
from telecrm_calls.records import CallEntry, CallNotFound, CallsError
from telecrm_common.db import Database

NOTE_FIELDS = ("reason", "result", "comment", "contact_id", "task_id", "ticket_id")
LINK_FIELDS = ("contact_id", "task_id", "ticket_id")
MAX_LENGTHS = {
    "reason": 200,
    "result": 200,
    "comment": 4000,
    "contact_id": 100,
    "task_id": 100,
    "ticket_id": 100,
}
MAX_UPDATED_BY_LENGTH = 100

# C0 controls, DEL, C1 controls and lone surrogates (which no UTF-8 database stores).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The same, but newline and tab (a comment is multi-line text).
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class InvalidNotes(CallsError):
    """A value that cannot be stored; ``field`` names it (``reason``, ``comment``, ``updated_by``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotesConflict(CallsError):
    """The notes changed since the version the update was made on; ``current_version`` is theirs now."""

    def __init__(self, call_id: str, expected_version: int, current_version: int) -> None:
        super().__init__(
            f"the notes of call {call_id!r} are at version {current_version}, not {expected_version}: "
            "read them again and reapply the change"
        )
        self.call_id = call_id
        self.expected_version = expected_version
        self.current_version = current_version


@dataclass(frozen=True)
class NotesOptions:
    """The values reason and result may take; empty: free text."""

    reasons: tuple[str, ...]
    results: tuple[str, ...]


def _clean(field: str, value: str | None) -> str | None:
    """A value as stored: stripped, None when empty; raises InvalidNotes."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidNotes(field, "must be a string")
    if field == "comment":
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        control = _CONTROL_IN_TEXT.search(value)
    else:
        control = _CONTROL.search(value)
    if control is not None:
        allowed = " (newline and tab are allowed)" if field == "comment" else ""
        raise InvalidNotes(field, f"control character U+{ord(control.group()):04X} not allowed{allowed}")
    value = value.strip()
    if not value:
        return None
    limit = MAX_LENGTHS.get(field, MAX_UPDATED_BY_LENGTH)
    if len(value) > limit:
        raise InvalidNotes(field, f"at most {limit} characters ({len(value)} given)")
    return value


def clean_changes(changes: Mapping[str, str | None]) -> dict[str, str | None]:
    """The fields to change, validated and normalized (without the option lists); raises InvalidNotes."""
    unknown = sorted(set(changes) - set(NOTE_FIELDS))
    if unknown:
        raise InvalidNotes(unknown[0], f"unknown field (the notes are {', '.join(NOTE_FIELDS)})")
    return {field: _clean(field, changes[field]) for field in NOTE_FIELDS if field in changes}


def clean_updated_by(value: str | None) -> str | None:
    return _clean("updated_by", value)


class CallNotesService:
    """Reads and updates the notes of calls (see the module's rules).

    ``reasons`` / ``results``: the allowed values (settings ``call_reasons`` / ``call_results``); empty
    allows free text. ``on_published`` is called after a commit that wrote a record event to the outbox
    (the outbox publisher's ``wake``).
    """

    def __init__(
        self,
        db: Database,
        *,
        reasons: Sequence[str] = (),
        results: Sequence[str] = (),
        on_published: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.options = NotesOptions(reasons=tuple(reasons), results=tuple(results))
        self._on_published = on_published

    async def get_notes(self, call_id: str) -> CallEntry:
        """The call with its notes; raises CallNotFound."""
        async with self.db.session() as session:
            row = await repository.get_call(session, call_id)
        if row is None:
            raise CallNotFound(call_id)
        return CallEntry(*row)

    async def update_notes(
        self,
        call_id: str,
        changes: Mapping[str, str | None],
        *,
        expected_version: int | None = None,
        updated_by: str | None = None,
    ) -> CallEntry:
        """Change the fields of ``changes`` (the mask: fields it lacks are left as they are; None or ""
        clears), and return the call as it now is.

        ``expected_version``: the ``notes_version`` the change was made on, or None for no check.
        Raises InvalidNotes, CallNotFound or NotesConflict; nothing is written then.
        """
        values = clean_changes(changes)
        author = clean_updated_by(updated_by)
        async with self.db.session() as session:
            call = await self._locked_call(session, call_id)
            if expected_version is not None and call.notes_version != expected_version:
                raise NotesConflict(call_id, expected_version, call.notes_version)
            diff = {field: value for field, value in values.items() if getattr(call, field) != value}
            self._check_options(diff)
            published = False
            if diff:
                for field, value in diff.items():
                    setattr(call, field, value)
                links_changed = any(field in LINK_FIELDS for field in diff)
                if links_changed:
                    call.links_edited = True
                call.notes_version += 1
                call.notes_updated_at = utcnow()
                call.notes_updated_by = author
                changed = [CHANGED_NOTES, *([CHANGED_LINKS] if links_changed else [])]
                published = await stage_record_event(session, call, changed=changed)
                await session.flush()
                await session.refresh(call)  # updated_at was set by the database side of the flush
            entry = CallEntry(call, bool(call.recorded))
        if published and self._on_published is not None:
            self._on_published()
        return entry

    def _check_options(self, diff: Mapping[str, str | None]) -> None:
        for field, allowed in (("reason", self.options.reasons), ("result", self.options.results)):
            value = diff.get(field)
            if value is not None and allowed and value not in allowed:
                raise InvalidNotes(field, f"{value!r} is not one of the configured {field}s")

    @staticmethod
    async def _locked_call(session: AsyncSession, call_id: str) -> Call:
        """The call's row, with the call locked for the transaction (as ingestion locks it)."""
        await repository.lock_calls(session, [call_id])
        if session.get_bind().dialect.name == "sqlite":
            # Take SQLite's write lock before reading: a transaction that reads first and writes later
            # fails at once ("database is locked") when another one wrote in between, instead of waiting.
            await session.execute(
                text("UPDATE calls SET notes_version = notes_version WHERE call_id = :call_id"),
                {"call_id": call_id},
            )
        call = (
            await session.execute(
                select(Call).where(Call.call_id == call_id).execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        if call is None:
            raise CallNotFound(call_id)
        return call
