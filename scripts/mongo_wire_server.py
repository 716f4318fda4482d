"""A MongoDB wire-protocol server for the second test lane (needs Python >= 3.13).

Runs mongoeco's in-memory engine behind a real socket, so PyMongo's
AsyncMongoClient is exercised exactly as against mongod. Prints the connection
URI as its first line, then serves until terminated.

    python3.13 -m venv .mongo-wire-venv
    .mongo-wire-venv/bin/pip install "mongoeco[wire]>=4.11,<5"
    .mongo-wire-venv/bin/python scripts/mongo_wire_server.py [--port 0]
"""

import argparse
import asyncio
import signal

from mongoeco.wire import AsyncMongoEcoProxyServer


async def serve(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncMongoEcoProxyServer(host="127.0.0.1", port=port) as server:
        print(server.address.uri, flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
