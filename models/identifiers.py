"""Every Temporal id and key debflow derives from package names and versions, kept within Temporal's limits.

Temporal (server 1.32, checked on the dev server) refuses a workflow id over 1,000 bytes, a fairness key
over 64 bytes, and a Keyword search attribute value whose JSON encoding passes 2,048 bytes. An id or key
here keeps its readable text where it fits; where it does not, it keeps as much of the start as fits and
ends in `~` and a digest of the whole text, so the same names always give the same id and different
names different ids. The full names stay in the search attributes (`DebflowPackage`, `DebflowVersion`)
and in the summary, which is where the Web UI and `temporal workflow list` find them.

What Debian accepts: Policy (5.6.1, 5.6.12) and dpkg set no upper bound on a name or a version, but the
files made from them must fit in a 255-byte file name (`NAME_VERSION_ARCH.buildinfo`, `.changes`,
`.debian.tar.xz`, `NAME_VERSION_ARCH.deb` for a binary). At most 100 characters each keeps every such
name within that bound; bookworm's longest are 71 (a source name) and 52 (a version). Longer ones are
refused up front, before anything is stored or started.
"""

from __future__ import annotations

import hashlib

WORKFLOW_ID_MAX = 1000  # bytes (Temporal's limit.maxIDLength, measured in bytes)
FAIRNESS_KEY_MAX = 64  # bytes
KEYWORD_VALUE_MAX = 2048 - 2  # bytes of the value: Temporal counts its JSON encoding, quotes included
NAME_MAX = 100  # characters of a source or binary package name
VERSION_MAX = 100  # characters of a version, epoch included
DIGEST_CHARS = 12  # hex digits of SHA-256: 48 bits, no collision among any realistic number of names

# The names go into Keyword search attributes whole: they must fit there.
assert max(NAME_MAX, VERSION_MAX) <= KEYWORD_VALUE_MAX


class TooLong(ValueError):
    """A name, version or workflow id longer than debflow (and Debian) accepts."""


def preview(text: str, limit: int = 40) -> str:
    """`text` itself, or its start: what an error line quotes of a name or id."""
    return text if len(text) <= limit else f"{text[:limit]}…"


def check_name(name: str, what: str = "source package name") -> None:
    """Refuse a package name longer than NAME_MAX (what Debian's file names can hold)."""
    if len(name) > NAME_MAX:
        raise TooLong(
            f"{what} {preview(name)!r} is {len(name)} characters long; at most {NAME_MAX} are accepted "
            "(Debian's file names NAME_VERSION_ARCH.* must fit in 255 bytes)"
        )


def check_version(version: str) -> None:
    if len(version) > VERSION_MAX:
        raise TooLong(
            f"version {preview(version)!r} is {len(version)} characters long; at most {VERSION_MAX} are "
            "accepted (Debian's file names NAME_VERSION_ARCH.* must fit in 255 bytes)"
        )


def check_package(source: str, version: str, binaries: list[str] | tuple[str, ...] = ()) -> None:
    """Refuse an upload or campaign trigger whose names Debian's tools could not put in a file name."""
    check_name(source)
    check_version(version)
    for binary in binaries:
        check_name(binary, "binary package name")


def check_workflow_id(workflow_id: str) -> None:
    """A workflow id to look up: Temporal knows none that is empty or longer than its limit."""
    size = len(workflow_id.encode())
    if not workflow_id:
        raise TooLong("the workflow id is empty")
    if size > WORKFLOW_ID_MAX:
        raise TooLong(
            f"no run with workflow id {preview(workflow_id)!r}: it is {size} bytes long, and Temporal's "
            f"workflow ids are at most {WORKFLOW_ID_MAX}"
        )


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def bounded(text: str, max_bytes: int) -> str:
    """`text` when its UTF-8 fits in `max_bytes`; else its start, `~` and the digest of all of it."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    tail = f"~{digest(text)}"
    # errors="ignore" drops a character cut in half, so the result is valid UTF-8 and still fits.
    return raw[: max_bytes - len(tail)].decode(errors="ignore") + tail


def upload_run_id(source: str, version: str, discriminator: str, again: str | None = None) -> str:
    """`upload-NAME_VERSION-DISCRIMINATOR` (the digest of upload, suite, architectures and checks), with
    `-AGAIN` for a further run of the same (`debflow submit --again`)."""
    suffix = f"-{discriminator}" + (f"-{again}" if again else "")
    return bounded(f"upload-{source}_{version}{suffix}", WORKFLOW_ID_MAX)


def upload_fairness_key(source: str) -> str:
    """One fairness key per source: uploads of one package share their turn."""
    return bounded(f"upload-{source}", FAIRNESS_KEY_MAX)


def campaign_id(source: str, version: str, *, simulated: bool, unique: str, kind: str = "campaign") -> str:
    """`[simulated-]campaign-SOURCE_VERSION-UNIQUE`; `kind` "rebuild" for rebuild campaigns."""
    mode = "simulated-" if simulated else ""
    return bounded(f"{mode}{kind}-{source}_{version}-{unique}", WORKFLOW_ID_MAX)


def campaign_fairness_key(workflow_id: str) -> str:
    """One fairness key per campaign, derived from its id: campaigns share workers evenly."""
    return bounded(workflow_id, FAIRNESS_KEY_MAX)


def batch_id(campaign: str, architecture: str, index: int) -> str:
    """`CAMPAIGN-ARCH-batch-NNNN`; the campaign part is shortened if the whole would pass the limit, so
    the architecture and the batch number stay readable."""
    suffix = f"-{architecture}-batch-{index:04d}"
    return bounded(campaign, WORKFLOW_ID_MAX - len(suffix.encode())) + suffix
