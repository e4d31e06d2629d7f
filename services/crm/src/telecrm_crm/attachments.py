"""Attachments of crm documents: size-limited, typed by their bytes, stored outside any web root.

A file is streamed to ``CRM_ATTACHMENTS_DIR/<aa>/<random key>`` (never the client's name, so no path
in a name can escape and nothing is ever executed or served by a web server), counted as it comes
(413 past ``CRM_ATTACHMENT_MAX_BYTES``, the partial file removed) and typed by its first bytes: only
the types in :data:`ALLOWED_TYPES` are kept, and a declared type that disagrees with the bytes is
refused (415). Downloads go out as ``attachment`` with ``nosniff`` and a sandboxing CSP, so even a
file a browser could render is not run in the application's origin.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fastapi import UploadFile
from fastapi.responses import FileResponse
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_common.db import utcnow
from telecrm_crm.models import Attachment

# Detected type -> the declared types a client may send for it (besides application/octet-stream).
ALLOWED_TYPES: dict[str, frozenset[str]] = {
    "application/pdf": frozenset({"application/pdf"}),
    "image/png": frozenset({"image/png"}),
    "image/jpeg": frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    "image/gif": frozenset({"image/gif"}),
    "image/webp": frozenset({"image/webp"}),
    "image/tiff": frozenset({"image/tiff", "image/tif"}),  # faxes
    "audio/wav": frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"}),
    "audio/mpeg": frozenset({"audio/mpeg", "audio/mp3"}),
    "application/zip": frozenset(
        {
            "application/zip",
            "application/x-zip-compressed",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/vnd.oasis.opendocument.text",
            "application/vnd.oasis.opendocument.spreadsheet",
        }
    ),
    "text/plain": frozenset({"text/plain", "text/csv", "text/x-csv", "application/csv"}),
}
_GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_SNIFF_BYTES = 512
_REFUSED_TEXT = re.compile(rb"<\s*(script|html|svg|iframe|object|embed|\?xml|!doctype)", re.IGNORECASE)


class AttachmentError(Exception):
    """Refused: ``status`` is the HTTP answer (413 too large, 415 type, 404 unknown)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sniff(head: bytes) -> str | None:
    """The type of a file from its first bytes, or None when it is not one we keep.

    Executables (MZ, ELF, Mach-O, scripts with ``#!``) and markup a browser would run (HTML, SVG,
    XML) are never recognised, so they are refused.
    """
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if head.startswith((b"MZ", b"\x7fELF", b"#!", b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa")):
        return None
    if b"\x00" in head or _REFUSED_TEXT.search(head):
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # a multi-byte character cut at the end of the sample is fine
            return None
    return "text/plain"


def safe_filename(name: str) -> str:
    """A display name without directories, control characters or leading dots (at most 255 chars)."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().lstrip(".")
    return name[:255] or "attachment"


@dataclass(frozen=True)
class StoredFile:
    path: Path
    attachment: Attachment


class AttachmentStore:
    """Saves, lists, opens and deletes attachments; the rows go in the caller's transaction."""

    def __init__(self, root: str | Path, *, max_bytes: int) -> None:
        self._root = Path(root).resolve()
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise AttachmentError(404, "attachment not found")
        return self._root / key[:2] / key

    async def save(
        self,
        session: AsyncSession,
        *,
        owner_kind: str,
        owner_id: str,
        filename: str,
        declared_type: str | None,
        chunks: AsyncIterator[bytes],
        created_by: str | None = None,
    ) -> Attachment:
        """Stream ``chunks`` to disk and add the row; a refusal keeps nothing and says why."""
        key = secrets.token_hex(32)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest = hashlib.sha256()
        size = 0
        head = b""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise AttachmentError(413, f"the file is larger than {self.max_bytes} bytes")
                    if len(head) < _SNIFF_BYTES:
                        head += chunk[: _SNIFF_BYTES - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise AttachmentError(415, "the file is empty")
            detected = sniff(head)
            if detected is None:
                raise AttachmentError(415, "this type of file is not accepted")
            declared = (declared_type or "").split(";")[0].strip().lower()
            if declared not in _GENERIC and declared not in ALLOWED_TYPES[detected]:
                raise AttachmentError(415, f"the file is {detected}, not {declared}")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        attachment = Attachment(
            id=str(uuid.uuid4()),
            owner_kind=owner_kind,
            owner_id=owner_id,
            filename=safe_filename(filename),
            content_type=detected,
            size=size,
            sha256=digest.hexdigest(),
            storage_key=key,
            created_at=utcnow(),
            created_by=created_by,
        )
        session.add(attachment)
        return attachment

    @staticmethod
    async def list(session: AsyncSession, owner_kind: str, owner_id: str) -> Sequence[Attachment]:
        rows = await session.scalars(
            select(Attachment)
            .where(Attachment.owner_kind == owner_kind, Attachment.owner_id == owner_id)
            .order_by(Attachment.created_at, Attachment.id)
        )
        return rows.all()

    async def open(self, session: AsyncSession, attachment_id: str) -> StoredFile:
        attachment = await session.get(Attachment, attachment_id)
        if attachment is None:
            raise AttachmentError(404, "attachment not found")
        path = self._path(attachment.storage_key)
        if not path.is_file():
            raise AttachmentError(404, "the attachment's file is missing")
        return StoredFile(path=path, attachment=attachment)

    async def delete(self, session: AsyncSession, attachment_id: str) -> Attachment:
        """Remove the row (in the caller's transaction) and the file."""
        attachment = await session.get(Attachment, attachment_id)
        if attachment is None:
            raise AttachmentError(404, "attachment not found")
        await session.execute(delete(Attachment).where(Attachment.id == attachment_id))
        self._path(attachment.storage_key).unlink(missing_ok=True)
        return attachment


DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
}

UPLOAD_CHUNK_BYTES = 64 * 1024


async def upload_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    """An uploaded file, piece by piece (the store counts and refuses past its size limit)."""
    while chunk := await upload.read(UPLOAD_CHUNK_BYTES):
        yield chunk


def download(stored: StoredFile) -> FileResponse:
    """A stored attachment as a download: never rendered inline, never sniffed, sandboxed."""
    return FileResponse(
        stored.path,
        media_type=stored.attachment.content_type,
        filename=stored.attachment.filename,
        content_disposition_type="attachment",
        headers=dict(DOWNLOAD_HEADERS),
    )
