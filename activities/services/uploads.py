"""Storing an upload: its .dsc and files checked, then kept as one debian:source-package artifact."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from activities.debian.dsc import BadUpload, CheckedSource, check_dsc
from activities.storage.store import ArtifactStore, NewArtifact
from models import identifiers


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may weigh (the settings' max_* values) and where dpkg-source may unpack it."""

    max_bytes: int
    max_unpacked_bytes: int
    max_metadata_bytes: int
    max_archive_members: int
    extract_in: Path | None = None


def check_upload(dsc: Path, limits: UploadLimits) -> CheckedSource:
    """The checked source package, or BadUpload: also when its names would make ids beyond Temporal's
    limits, so that nothing of a run that cannot start is stored."""
    checked = check_dsc(
        dsc,
        max_bytes=limits.max_bytes,
        max_unpacked_bytes=limits.max_unpacked_bytes,
        max_metadata_bytes=limits.max_metadata_bytes,
        max_archive_members=limits.max_archive_members,
        extract_in=limits.extract_in,
    )
    try:
        identifiers.check_package(checked.data.name, checked.data.version, checked.data.binaries)
    except identifiers.TooLong as e:
        raise BadUpload(str(e)) from None
    return checked


def store_upload(store: ArtifactStore, dsc: Path, checked: CheckedSource, *, expiration_days: int) -> int:
    """The id of the upload's debian:source-package artifact.

    Its idempotency key is the SHA-256 of the .dsc (which names every file by its SHA-256): the same
    upload stored twice, even concurrently, is one artifact.
    """
    key = "debian:source-package/" + hashlib.sha256(dsc.read_bytes()).hexdigest()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expiration_days)
    (artifact_id,) = store.register(
        [NewArtifact("debian:source-package", checked.data, checked.files, key)], expires_at=expires
    )
    return artifact_id
