"""A Python `websockets` client driven by tests/interop.rs.

    python ws_client.py URL [--ca CA_PEM] [--extensions] [--more] [--hold]

Connects offering subprotocols chat.v2 and chat.v1 (and, as websockets does by
default, permessage-deflate), over TLS trusting only CA_PEM when given. Sends text and
binary messages and checks each echo, then closes with 1000. Reports on stdout:

    protocol PROTO
    extensions EXTS                (with --extensions: negotiated extension names)
    echo text|binary BYTES ok      (one per message; BYTES as sent, UTF-8 for text)
    ready                          (with --hold: then waits for "close" on stdin;
                                    "recv" reads one message and reports it as
                                    received text|binary CONTENT)
    closed sent=CODE received=CODE

--more adds non-ASCII text, small and large, and a larger binary message after the
usual four.

Any failure prints "error KIND MESSAGE" and exits 1; the time limit exits 3.
"""

import argparse
import asyncio
import os
import ssl
import sys
import threading

from websockets.asyncio.client import connect

MESSAGES = [
    "hello from python",
    "websockets through tunnelscope. " * 100,
    bytes([0, 1, 2, 253, 254, 255]),
    bytes(i % 251 for i in range(70_000)),
]

MORE_MESSAGES = [
    "héllo ✓ 🌍 from python",
    "ünïcødé ✓ 🚀 deflated through tunnelscope. " * 200,
    bytes((i * 7) % 256 for i in range(262_144)),
]


async def stdin_line() -> str:
    """The next line of stdin ("" at EOF), read by a daemon thread so that a script
    that is never told to go on still exits at its time limit."""
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()

    def deliver(text: str) -> None:
        if not line.done():
            line.set_result(text)

    def read() -> None:
        text = sys.stdin.readline()
        try:
            loop.call_soon_threadsafe(deliver, text)
        except RuntimeError:  # the loop is gone: the script is exiting anyway
            pass

    threading.Thread(target=read, daemon=True).start()
    return await line


async def run(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=args.ca) if args.ca else None
    messages = MESSAGES + (MORE_MESSAGES if args.more else [])
    async with connect(
        args.url,
        subprotocols=["chat.v2", "chat.v1"],
        ssl=context,
        open_timeout=10,
        close_timeout=10,
    ) as ws:
        print(f"protocol {ws.subprotocol or '-'}", flush=True)
        if args.extensions:
            names = ",".join(e.name for e in ws.protocol.extensions)
            print(f"extensions {names or '-'}", flush=True)
        for message in messages:
            await ws.send(message)
            echo = await ws.recv()
            kind = "binary" if isinstance(message, bytes) else "text"
            size = len(message) if isinstance(message, bytes) else len(message.encode())
            if type(echo) is not type(message):
                fail("ECHO", f"{kind} came back as {type(echo).__name__}")
            if echo != message:
                fail("ECHO", f"{kind} of {size} changed")
            print(f"echo {kind} {size} ok", flush=True)
        if args.hold:
            print("ready", flush=True)
            while True:
                line = await stdin_line()
                if not line:
                    fail("STDIN", "closed before close")
                if line.strip() == "close":
                    break
                if line.strip() == "recv":
                    got = await ws.recv()
                    if isinstance(got, bytes):
                        print(f"received binary {got.hex()}", flush=True)
                    else:
                        print(f"received text {got}", flush=True)
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
    parser.add_argument("--extensions", action="store_true")
    parser.add_argument("--more", action="store_true")
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args()
    limit = float(os.environ.get("INTEROP_LIMIT_MS", "30000")) / 1000
    try:
        asyncio.run(asyncio.wait_for(run(args), limit))
    except asyncio.TimeoutError:
        print("error TIMEOUT time limit reached", flush=True)
        sys.exit(3)
    except Exception as e:  # any other failure is reported, not a traceback
        fail(type(e).__name__, str(e).replace("\n", " "))


if __name__ == "__main__":
    main()
