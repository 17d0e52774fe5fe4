"""Reading a .dsc the way dpkg reads it (Dpkg::Control::HashCore), stricter where dpkg is lax.

dpkg splits a control file on LF only, trims trailing ASCII whitespace, takes a field name up to the first
colon (whitespace before the colon does not count: `Source :` is `Source`), compares names without regard
to case, refuses a repeated field, skips `#` comment lines, and reads one paragraph, optionally inside an
OpenPGP clear-signed armour whose signature block must follow. What it ignores after that paragraph (more
paragraphs, text after the signature) we refuse, and we refuse characters that other readers treat as line
breaks or that PostgreSQL cannot store (NUL), so every reader sees the same fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Anything but TAB among the C0 and C1 controls, DEL, and the Unicode line and paragraph separators:
# Python's str.splitlines() breaks lines at several of them where dpkg does not.
FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# deb822: printable US-ASCII but the colon, not starting with `#` or `-`.
FIELD_NAME = re.compile(r"^[!-9;-~]+$")
ARMOUR = re.compile(r"^-----(BEGIN PGP SIGNED MESSAGE|BEGIN PGP SIGNATURE|END PGP SIGNATURE)-----[\t ]*$")
# Perl's \s on bytes: the ASCII whitespace dpkg trims (the other controls are refused before).
WHITESPACE = " \t"


class ControlError(ValueError):
    """The control file is unusable; the message says why in one line (without the file's name)."""


@dataclass(frozen=True)
class Paragraph:
    """One control paragraph: fields in file order, looked up without regard to case."""

    fields: dict[str, tuple[str, str]]  # lower-case name → (name as written, value)
    signed: bool

    def get(self, name: str, default: str = "") -> str:
        found = self.fields.get(name.lower())
        return found[1] if found else default

    def __contains__(self, name: str) -> bool:
        return name.lower() in self.fields

    def items(self) -> list[tuple[str, str]]:
        return list(self.fields.values())


def _armour(line: str) -> str | None:
    found = ARMOUR.match(line)
    return found.group(1) if found else None


def read_paragraph(data: bytes) -> Paragraph:
    """The one paragraph of a .dsc, or ControlError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ControlError("it is not UTF-8 text") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, 1):
        bad = FORBIDDEN.search(line)
        if bad:
            what = (
                "a NUL byte"
                if bad.group() == "\0"
                else f"the character U+{ord(bad.group()):04X} (a control or line-separator character)"
            )
            raise ControlError(f"line {number} holds {what}")

    fields: dict[str, tuple[str, str]] = {}
    current: str | None = None
    signed = expect_signature = False
    border = True  # before the paragraph: blank lines are skipped
    index = 0
    while index < len(lines):
        raw, number = lines[index], index + 1
        index += 1
        line = raw.rstrip(WHITESPACE)
        if not line and border:
            continue
        if line.startswith("#"):
            continue  # a comment, wherever it is (as dpkg)
        border = False
        armour = _armour(line)
        if not line or (expect_signature and armour == "BEGIN PGP SIGNATURE"):
            if expect_signature:
                index = _skip_signature(lines, index - (1 if line else 0))
                signed = True
            break
        if armour == "BEGIN PGP SIGNED MESSAGE":
            if fields or expect_signature:
                raise ControlError(f"line {number}: an OpenPGP armour is not allowed here")
            expect_signature = True
            while index < len(lines) and lines[index].strip(WHITESPACE):
                index += 1  # the armour headers (Hash: ...) up to the blank line
            index += 1
            continue
        if line[0] in WHITESPACE:
            if current is None:
                raise ControlError(f"line {number}: a continuation line outside a field")
            value = line[1:]
            if value.strip(".") == "":
                value = value[1:]
            name, before = fields[current]
            fields[current] = (name, f"{before}\n{value}")
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(WHITESPACE)
        if not colon or not name or any(c in name for c in WHITESPACE):
            raise ControlError(f"line {number} is not a field (name: value), a continuation or a blank line")
        if not FIELD_NAME.match(name) or name[0] == "-":
            raise ControlError(f"line {number}: invalid field name {name!r}")
        key = name.lower()
        if key in fields:
            raise ControlError(f"has the field {name!r} more than once (line {number})")
        fields[key] = (name, value.lstrip(WHITESPACE))
        current = key
    else:
        if expect_signature:
            raise ControlError("its OpenPGP armour has no signature block")
    if any(line.strip(WHITESPACE) for line in lines[index:]):
        raise ControlError(
            "has text after its OpenPGP signature" if signed else "has more than one paragraph"
        )
    return Paragraph(fields, signed)


def _skip_signature(lines: list[str], index: int) -> int:
    """The index after the signature block that must start at `index` (after blank lines)."""
    while index < len(lines) and not lines[index].strip(WHITESPACE):
        index += 1
    if index == len(lines) or _armour(lines[index].rstrip(WHITESPACE)) != "BEGIN PGP SIGNATURE":
        raise ControlError("its OpenPGP armour has no signature block")
    for end in range(index + 1, len(lines)):
        if _armour(lines[end].rstrip(WHITESPACE)) == "END PGP SIGNATURE":
            return end + 1
    raise ControlError("its OpenPGP signature block is unfinished")


@dataclass(frozen=True)
class Listing:
    checksum: str
    size: int
    name: str


DIGEST_LENGTHS = {"Files": 32, "Checksums-Sha1": 40, "Checksums-Sha256": 64}


def read_checksums(paragraph: Paragraph, field: str) -> list[Listing]:
    """The `checksum size name` lines of a checksum field, as dpkg requires them (lower-case hex, a
    decimal size); ControlError names the first malformed line."""
    line = re.compile(rf"^([0-9a-f]{{{DIGEST_LENGTHS[field]}}})[\t ]+([0-9]{{1,19}})[\t ]+(\S+)$")
    listings = []
    for entry in paragraph.get(field).split("\n"):
        entry = entry.strip(WHITESPACE)
        if not entry:
            continue
        found = line.match(entry)
        if not found:
            raise ControlError(f"invalid line in {field}: {entry!r} (expected: checksum size name)")
        listings.append(Listing(found.group(1), int(found.group(2)), found.group(3)))
    return listings
