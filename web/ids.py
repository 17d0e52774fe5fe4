"""What the site accepts in a URL: package names, suites, architectures, run ids and artifact ids.

A malformed value is refused with 400 before any query; a well-formed one nothing matches gives 404.
"""

from __future__ import annotations

import re

from fastapi import HTTPException

from models.identifiers import NAME_MAX, WORKFLOW_ID_MAX

# Debian Policy 5.6.1: lower case letters, digits, + - . ; at least two characters, starting alphanumeric.
_SOURCE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_SUITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
_ARCH = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
# Workflow ids debflow makes (models/identifiers.py): names, versions (with epochs and tildes), digests.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~:-]*")
_ARTIFACT_ID = re.compile(r"[0-9]{1,18}")
_FILE_PATH = re.compile(r"[A-Za-z0-9._+~-][A-Za-z0-9._+~/-]{0,254}")


def bad(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def not_found(message: str) -> HTTPException:
    return HTTPException(status_code=404, detail=message)


def source_name(text: str) -> str:
    if len(text) > NAME_MAX or not _SOURCE.fullmatch(text):
        raise bad(f"invalid source package name {text[:40]!r}: Debian names are [a-z0-9][a-z0-9+.-]+")
    return text


def suite_name(text: str) -> str:
    if not _SUITE.fullmatch(text):
        raise bad(f"invalid suite name {text[:40]!r}")
    return text


def architecture(text: str) -> str:
    if not _ARCH.fullmatch(text):
        raise bad(f"invalid architecture {text[:40]!r}")
    return text


def run_id(text: str, what: str = "run") -> str:
    if len(text.encode()) > WORKFLOW_ID_MAX or not _RUN_ID.fullmatch(text):
        raise bad(f"invalid {what} id {text[:40]!r}")
    return text


def artifact_id(text: str) -> int:
    if not _ARTIFACT_ID.fullmatch(text):
        raise bad(f"invalid artifact id {text[:40]!r}: a number, as the pages link it")
    return int(text)


def file_path(text: str) -> str:
    """A path inside an artifact: relative, no `..` or empty parts (the store's own rule)."""
    parts = text.split("/")
    if not _FILE_PATH.fullmatch(text) or any(p in ("", ".", "..") for p in parts):
        raise bad(f"invalid file name {text[:40]!r}")
    return text
