"""Checks the admin API's event stream against its JSON Schema.

    python validate_events.py WS_URL SCHEMA_PATH COUNT TIMEOUT_S [TOKEN]

Connects to WS_URL (e.g. ws://127.0.0.1:9090/api/events; with the header
"Authorization: Bearer TOKEN" when TOKEN is given), reads text messages until COUNT
have arrived (COUNT 0: until the proxy closes the stream, which is then no error) or
TIMEOUT_S seconds have passed since the connection opened, and
validates each one against the schema at SCHEMA_PATH (assets/events.schema.json)
with Draft202012Validator, format checking off. Reports on stdout, as it goes:

    connected                      (the stream is open)
    got TYPE                       (each message as it arrives)

and at the end:

    seen TYPE N                    (one per message type seen, sorted by type)
    ok N                           (every message was valid; exit 0)
    invalid TYPE: ERROR in JSON    (one per invalid message; exit 1)

TYPE is "?" for a message that is not a JSON object with a string `type`.

Exit 2, with "error ..." on stderr, when the check could not run: the schema cannot
be read, the connection fails (refused, a non-101 answer such as 401, a timeout), no
message arrives at all, or the stream is closed before COUNT messages arrive (the
messages read until then are still reported, and an invalid one still exits 1).

Needs the `websockets` (13 or newer) and `jsonschema` packages.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time

import jsonschema
from jsonschema.exceptions import best_match
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

# Larger than any snapshot a proxy under test holds (websockets' default is 1 MiB).
MAX_MESSAGE = 256 * 1024 * 1024


class Unreachable(Exception):
    """The stream could not be opened or read: exit 2."""


async def read(url: str, count: int, timeout: float, token: str | None):
    """The messages read (str, or bytes for a binary one), and why reading stopped
    early (None when COUNT arrived or the time ran out)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    messages: list[str | bytes] = []
    try:
        ws = await connect(
            url,
            additional_headers=headers,
            open_timeout=timeout,
            close_timeout=2,
            max_size=MAX_MESSAGE,
        )
    except InvalidStatus as e:
        status = e.response.status_code
        body = e.response.body.decode("utf-8", "replace").strip() if e.response.body else ""
        raise Unreachable(f"{url} answered {status} instead of 101 {body}".rstrip()) from e
    except InvalidURI as e:
        raise Unreachable(f"not a WebSocket URL: {e}") from e
    except (InvalidHandshake, OSError, asyncio.TimeoutError) as e:
        what = str(e) or type(e).__name__
        raise Unreachable(f"cannot connect to {url}: {what}") from e

    print("connected", flush=True)
    stopped = None
    deadline = time.monotonic() + timeout
    try:
        while count == 0 or len(messages) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                messages.append(await asyncio.wait_for(ws.recv(), left))
                print(f"got {message_type_of(messages[-1])}", flush=True)
            except asyncio.TimeoutError:
                break
            except ConnectionClosed as e:
                rcvd = e.rcvd
                how = f"{rcvd.code} {rcvd.reason!r}" if rcvd else "without a Close frame"
                stopped = f"the stream was closed ({how}) after {len(messages)} messages"
                break
    finally:
        await ws.close()
    return messages, stopped


def message_type_of(raw) -> str:
    """The `type` of a raw message, or "?" when it has none."""
    try:
        return message_type(json.loads(raw))
    except (TypeError, ValueError):
        return "?"


def message_type(message) -> str:
    if isinstance(message, dict) and isinstance(message.get("type"), str):
        return message["type"]
    return "?"


def json_path(path) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def is_type_mismatch(error) -> bool:
    """The error says a branch's `type` const does not match this message."""
    return error.validator == "const" and list(error.absolute_path) == ["type"]


def explain(validator, message) -> str | None:
    """Why the message is invalid (the most useful single error), or None."""
    errors = list(validator.iter_errors(message))
    if not errors:
        return None
    if message_type(message) == "?":
        # Not an object with a type: say that, not what some message type lacks.
        errors = [e for e in errors if e.validator != "oneOf" or e.absolute_path] or errors
    for error in errors:
        if error.validator != "oneOf" or error.absolute_path:
            continue
        # The top-level oneOf over message types: keep the errors of the branch
        # whose `type` matched, rather than fifteen "is not 'x'" ones.
        branches = collections.defaultdict(list)
        for sub in error.context or []:
            branches[sub.relative_schema_path[0]].append(sub)
        matching = [
            subs for subs in branches.values() if not any(is_type_mismatch(s) for s in subs)
        ]
        if matching:
            errors = matching[0]
        elif isinstance(message, dict) and "type" in message:
            return f"unknown message type {message['type']!r}"
        break
    error = best_match(errors)
    where = json_path(error.absolute_path)
    if error.validator in ("oneOf", "anyOf"):
        # Its message repeats the whole instance: list what each alternative wants.
        alternatives = "/".join(str(p) for p in error.absolute_schema_path)
        if not error.context:
            return f"{where}: valid under more than one alternative of {alternatives}"
        wants = "; ".join(sorted({sub.message for sub in error.context}))
        return f"{where}: valid under none of the alternatives of {alternatives} ({wants})"
    return f"{where}: {error.message}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Validate /api/events messages.")
    parser.add_argument("url", metavar="WS_URL")
    parser.add_argument("schema", metavar="SCHEMA_PATH")
    parser.add_argument("count", metavar="COUNT", type=int)
    parser.add_argument("timeout", metavar="TIMEOUT_S", type=float)
    parser.add_argument("token", metavar="TOKEN", nargs="?")
    args = parser.parse_args()
    if args.count < 0 or args.timeout <= 0:
        parser.error("COUNT must be 0 (until closed) or more and TIMEOUT_S above 0")

    try:
        with open(args.schema, encoding="utf-8") as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, jsonschema.SchemaError) as e:
        print(f"error cannot use the schema {args.schema}: {e}", file=sys.stderr)
        sys.exit(2)
    validator = jsonschema.Draft202012Validator(schema, format_checker=None)

    try:
        raw, stopped = asyncio.run(read(args.url, args.count, args.timeout, args.token))
    except Unreachable as e:
        print(f"error {e}", file=sys.stderr)
        sys.exit(2)
    if not raw:
        print(
            f"error {stopped or f'no message from {args.url} in {args.timeout:g} s'}",
            file=sys.stderr,
        )
        sys.exit(2)

    seen: collections.Counter[str] = collections.Counter()
    invalid: list[str] = []
    for text in raw:
        if isinstance(text, bytes):
            seen["?"] += 1
            invalid.append(f"invalid ?: a binary message, not text in {text[:64].hex()}")
            continue
        try:
            message = json.loads(text)
        except ValueError as e:
            seen["?"] += 1
            invalid.append(f"invalid ?: not JSON ({e}) in {text}")
            continue
        kind = message_type(message)
        seen[kind] += 1
        why = explain(validator, message)
        if why is not None:
            invalid.append(f"invalid {kind}: {why} in {text}")

    for kind in sorted(seen):
        print(f"seen {kind} {seen[kind]}")
    for line in invalid:
        print(line)
    sys.stdout.flush()
    if invalid:
        sys.exit(1)
    if stopped and args.count > 0:
        print(f"error {stopped}", file=sys.stderr)
        sys.exit(2)
    print(f"ok {len(raw)}", flush=True)


if __name__ == "__main__":
    main()
