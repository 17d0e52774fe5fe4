"""The form fields of a debci API call, read with the standard library: urlencoded (`curl --data`) or
multipart (`curl --form tests=@tests.json`), the body capped while it is read.

(FastAPI's own form parsing needs python-multipart; these calls have two or three small fields, so
the standard library's MIME parser serves without a new dependency.)"""

from __future__ import annotations

import email.parser
import email.policy
from urllib.parse import parse_qs

from fastapi import HTTPException, Request

from web.ids import bad

MAX_BODY = 64 * 1024 * 1024  # 30,000 requests with pins are ~10 MB of JSON


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the request body is {declared} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _text(data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad(f"the field {field!r} is not UTF-8 (byte {e.start})") from None


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """Field name → value (an uploaded file's content, as text); a field given twice is refused."""
    media = content_type.split(";", 1)[0].strip().lower()
    fields: dict[str, str] = {}
    if not body.strip():
        return fields
    if media == "application/x-www-form-urlencoded" or not media:
        try:
            pairs = parse_qs(_text(body, "body"), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise bad("the body is not a form (application/x-www-form-urlencoded)") from None
        for name, values in pairs.items():
            if len(values) > 1:
                raise bad(f"the field {name[:40]!r} is given {len(values)} times")
            fields[name] = values[0]
        return fields
    if media == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not message.is_multipart() or message.defects:
            raise bad("the body is not a well-formed multipart/form-data form")
        for part in message.iter_parts():
            param = part.get_param("name", header="content-disposition")
            field = param if isinstance(param, str) else None
            if field is None:
                raise bad("a multipart part has no field name (Content-Disposition: form-data; name=...)")
            if field in fields:
                raise bad(f"the field {field[:40]!r} is given twice")
            payload = part.get_payload(decode=True)
            fields[field] = _text(payload if isinstance(payload, bytes) else b"", field)
        return fields
    raise bad(f"unsupported Content-Type {media[:60]!r}: a form (urlencoded or multipart/form-data)")


async def read_form(request: Request) -> dict[str, str]:
    return parse_form(request.headers.get("content-type", ""), await read_body(request))
