"""Keys of the debci API (`Auth-Key`): made at random, shown once, kept only as their SHA-256.

A key is looked up by its hash (an indexed equality on a value an attacker cannot choose the preimage
of), so no constant-time comparison is needed; a revoked key is refused like an unknown one."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.debci import Requester
from models.tables import ApiKey

__all__ = ["KeyInfo", "KeyRefused", "Requester", "add_key", "authenticate", "list_keys", "revoke_key"]

KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")  # shown in Auth-User: a header-safe word
KEY_MAX = 200  # characters of a key a caller may send (ours are 43)


class KeyRefused(ValueError):
    """A key name that is invalid, taken, or unknown: one line for the command to print."""


@dataclass(frozen=True)
class KeyInfo:
    name: str
    is_admin: bool
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_key_name(name: str) -> str:
    if not KEY_NAME.fullmatch(name):
        raise KeyRefused(f"invalid key name {name[:40]!r}: letters, digits and . _ @ + - (at most 100)")
    return name


def add_key(sessions: sessionmaker[Session], name: str, *, admin: bool = False) -> str:
    """A new key for `name`, returned once: only its hash is stored."""
    check_key_name(name)
    key = secrets.token_urlsafe(32)
    try:
        with sessions.begin() as db:
            db.add(ApiKey(name=name, key_sha256=key_hash(key), is_admin=admin))
    except IntegrityError:
        raise KeyRefused(f"a key named {name!r} exists already (revoked keys keep their name)") from None
    return key


def authenticate(sessions: sessionmaker[Session], key: str | None) -> Requester | None:
    """The requester a key belongs to; None for a missing, unknown or revoked key."""
    if not key or len(key) > KEY_MAX:
        return None
    with sessions() as db:
        row = db.execute(
            select(ApiKey.id, ApiKey.name, ApiKey.is_admin).where(
                ApiKey.key_sha256 == key_hash(key), ApiKey.revoked_at.is_(None)
            )
        ).first()
    return None if row is None else Requester(id=row.id, name=row.name, is_admin=row.is_admin)


def list_keys(sessions: sessionmaker[Session]) -> list[KeyInfo]:
    with sessions() as db:
        rows = db.execute(
            select(ApiKey.name, ApiKey.is_admin, ApiKey.created_at, ApiKey.revoked_at).order_by(ApiKey.name)
        ).all()
    return [KeyInfo(*row) for row in rows]


def revoke_key(sessions: sessionmaker[Session], name: str) -> None:
    """Refuse the key from now on; its row stays (its jobs name it)."""
    with sessions.begin() as db:
        found = db.execute(select(ApiKey.revoked_at).where(ApiKey.name == name)).first()
        if found is None:
            raise KeyRefused(f"no key named {name[:100]!r}")
        if found.revoked_at is not None:
            raise KeyRefused(f"the key {name!r} is revoked already")
        db.execute(update(ApiKey).where(ApiKey.name == name).values(revoked_at=dt.datetime.now(dt.UTC)))
