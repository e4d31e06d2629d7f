"""The crm foundation: attachments refuse what they must, the operation log keeps what its level says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from telecrm_common.auth import Principal
from telecrm_common.cursors import InvalidCursor
from telecrm_common.db import Database
from telecrm_crm import paging
from telecrm_crm.attachments import AttachmentError, AttachmentStore, safe_filename, sniff
from telecrm_crm.audit import AuditLog, diff
from telecrm_crm.models import Attachment, AuditEntry


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


PDF = b"%PDF-1.7\n" + b"x" * 100


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (PDF, "application/pdf"),
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"II*\x00....", "image/tiff"),
        ("Имя;Телефон\nИван;+359888123456\n".encode(), "text/plain"),  # noqa: RUF001
        (b"MZ\x90\x00 executable", None),
        (b"\x7fELF\x02\x01", None),
        (b"#!/bin/sh\nrm -rf /\n", None),
        (b"<html><script>alert(1)</script>", None),
        (b'<?xml version="1.0"?><svg onload="x()">', None),
    ],
)
def test_files_are_typed_by_their_bytes(head: bytes, expected: str | None) -> None:
    assert sniff(head) == expected


def test_a_filename_cannot_name_a_directory() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Windows\\evil.exe") == "evil.exe"
    assert safe_filename(".bashrc") == "bashrc"
    assert safe_filename("a\x00b\nc.pdf") == "abc.pdf"


async def test_an_attachment_is_kept_outside_its_name_and_refusals_keep_nothing(
    crm_db: Database, tmp_path: Path
) -> None:
    store = AttachmentStore(tmp_path / "files", max_bytes=1000)
    async with crm_db.session() as session:
        saved = await store.save(
            session,
            owner_kind="task",
            owner_id="t1",
            filename="../offer.pdf",
            declared_type="application/pdf",
            chunks=_chunks(PDF[:50], PDF[50:]),
            created_by="u1",
        )
    async with crm_db.session() as session:
        opened = await store.open(session, saved.id)
        assert opened.path.read_bytes() == PDF
        assert opened.attachment.filename == "offer.pdf"
        assert opened.path.name != "offer.pdf"
        assert [a.id for a in await store.list(session, "task", "t1")] == [saved.id]
    refusals = [
        (413, _chunks(PDF, b"y" * 1000), "application/pdf"),
        (415, _chunks(b"MZ\x90\x00" + b"\x00" * 10), "application/pdf"),
        (415, _chunks(PDF), "image/png"),  # the bytes are a PDF
        (415, _chunks(), None),
    ]
    for status, chunks, declared in refusals:
        async with crm_db.session() as session:
            with pytest.raises(AttachmentError) as caught:
                await store.save(
                    session,
                    owner_kind="task",
                    owner_id="t1",
                    filename="x",
                    declared_type=declared,
                    chunks=chunks,
                )
            assert caught.value.status == status
    files = [p for p in (tmp_path / "files").rglob("*") if p.is_file()]
    assert len(files) == 1
    async with crm_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Attachment)) == 1
        await store.delete(session, saved.id)
    assert not opened.path.exists()


async def test_the_operation_log_keeps_what_its_level_says(crm_db: Database) -> None:
    actor = Principal(subject="u1", employee_id="e1")
    for level, kept in (("none", 0), ("writes", 2), ("changes", 3)):
        log = AuditLog(level)  # type: ignore[arg-type]
        async with crm_db.session() as session:
            await session.execute(AuditEntry.__table__.delete())  # type: ignore[attr-defined]
            await log.record(session, actor, "task", "t1", "create", {"name": [None, "Call back"]})
            await log.record(session, actor, "task", "t1", "update", diff({"name": "a"}, {"name": "b"}))
            await log.record(session, "system:calls", "task", "t1", "status", {"status": ["set", "done"]})
        async with crm_db.session() as session:
            entries = await AuditLog.history(session, "task", "t1")
        assert len(entries) == kept, level
    assert [e.action for e in entries] == ["create", "update", "status"]
    assert entries[1].changes == {"name": ["a", "b"]}
    assert entries[2].actor_subject == "system:calls"


def test_a_page_cursor_that_was_edited_is_refused() -> None:
    token = paging.encode(b"k", "tasks", ["2026-11-24T10:00:00+00:00", "t1"])
    assert paging.decode(b"k", "tasks", token) == ["2026-11-24T10:00:00+00:00", "t1"]
    with pytest.raises(InvalidCursor):
        paging.decode(b"k", "events", token)
    with pytest.raises(InvalidCursor):
        paging.decode(b"other", "tasks", token)
    with pytest.raises(InvalidCursor):
        paging.decode(b"k", "tasks", "x" + token)
