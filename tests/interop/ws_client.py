"""A Python `websockets` client driven by tests/interop.rs.

    python ws_client.py URL [--ca CA_PEM]

Connects offering subprotocols chat.v2 and chat.v1 (and, as websockets does by
default, permessage-deflate), over TLS trusting only CA_PEM when given. Sends text and
binary messages and checks each echo, then closes with 1000. Reports on stdout:

    protocol PROTO
    echo text|binary BYTES ok      (one per message)
    closed sent=CODE received=CODE

Any failure prints "error KIND MESSAGE" and exits 1; the time limit exits 3.
"""

import argparse
import asyncio
import os
import ssl
import sys

from websockets.asyncio.client import connect

MESSAGES = [
    "hello from python",
    "websockets through tunnelscope. " * 100,
    bytes([0, 1, 2, 253, 254, 255]),
    bytes(i % 251 for i in range(70_000)),
]


async def run(url: str, ca: str | None) -> None:
    context = ssl.create_default_context(cafile=ca) if ca else None
    async with connect(
        url,
        subprotocols=["chat.v2", "chat.v1"],
        ssl=context,
        open_timeout=10,
        close_timeout=10,
    ) as ws:
        print(f"protocol {ws.subprotocol or '-'}", flush=True)
        for message in MESSAGES:
            await ws.send(message)
            echo = await ws.recv()
            kind = "binary" if isinstance(message, bytes) else "text"
            if type(echo) is not type(message):
                fail("ECHO", f"{kind} came back as {type(echo).__name__}")
            if echo != message:
                fail("ECHO", f"{kind} of {len(message)} changed")
            print(f"echo {kind} {len(message)} ok", flush=True)
        await ws.close(1000, "done")
    sent = ws.protocol.close_sent.code if ws.protocol.close_sent else "-"
    received = ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else "-"
    print(f"closed sent={sent} received={received}", flush=True)


def fail(kind: str, message: str) -> None:
    print(f"error {kind} {message}", flush=True)
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--ca")
    args = parser.parse_args()
    limit = float(os.environ.get("INTEROP_LIMIT_MS", "30000")) / 1000
    try:
        asyncio.run(asyncio.wait_for(run(args.url, args.ca), limit))
    except asyncio.TimeoutError:
        print("error TIMEOUT time limit reached", flush=True)
        sys.exit(3)
    except Exception as e:  # any other failure is reported, not a traceback
        fail(type(e).__name__, str(e).replace("\n", " "))


if __name__ == "__main__":
    main()
