"""A conforming echo server on Python's `websockets` (permessage-deflate on), for the
Autobahn fuzzingclient. Binds 127.0.0.1:PORT (0: any free port) and prints
"listening PORT" once it accepts connections.

    tests/interop/.venv/bin/python conformance/autobahn/echo_websockets.py [PORT]
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except Exception:
        pass  # the fuzzer breaks connections on purpose; the close is the verdict


async def main(port):
    async with serve(
        echo,
        "127.0.0.1",
        port,
        max_size=None,  # the 9.* cases send up to 16 MiB
        max_queue=None,
        ping_interval=None,
        compression="deflate",
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print("listening %d" % bound, flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
