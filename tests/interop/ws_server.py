"""A Python `websockets` server used as a tunnelscope backend by tests/interop.rs.

    python ws_server.py [--extensions]

Listens on 127.0.0.1 (a free port), supports subprotocols chat.v1 and chat.v2 and
picks by its own preference (chat.v1 first), accepts permessage-deflate when offered
(websockets' default), echoes every message with its type. Reports on stdout, one
line each:

    listening PORT
    connection path=PATH protocol=PROTO forwarded-proto=PROTO
    extensions EXTS               (with --extensions: negotiated extension names)
    closed CODE

Exits when stdin closes (its parent went away) or after a hard time limit.
"""

import argparse
import asyncio
import functools
import os
import sys
import threading

from websockets.asyncio.server import serve


async def echo(ws, report_extensions: bool) -> None:
    proto = ws.request.headers.get("X-Forwarded-Proto", "-")
    print(
        f"connection path={ws.request.path} protocol={ws.subprotocol or '-'} "
        f"forwarded-proto={proto}",
        flush=True,
    )
    if report_extensions:
        names = ",".join(e.name for e in ws.protocol.extensions)
        print(f"extensions {names or '-'}", flush=True)
    async for message in ws:
        await ws.send(message)
    print(f"closed {ws.close_code}", flush=True)


async def run(report_extensions: bool) -> None:
    handler = functools.partial(echo, report_extensions=report_extensions)
    protocols = ["chat.v1", "chat.v2"]
    async with serve(handler, "127.0.0.1", 0, subprotocols=protocols) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)
        await server.serve_forever()


def exit_when_stdin_closes() -> None:
    sys.stdin.read()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extensions", action="store_true")
    args = parser.parse_args()
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    limit = float(os.environ.get("INTEROP_LIMIT_MS", "30000")) / 1000
    try:
        asyncio.run(asyncio.wait_for(run(args.extensions), limit))
    except asyncio.TimeoutError:
        print("ws_server.py: time limit reached", file=sys.stderr, flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
