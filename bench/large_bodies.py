"""Gateway memory under oversized bodies: `python -m bench.large_bodies [options]`.

Starts the gateway in its own process (bench/target.py: sandbox settings, in-memory
store), then sends --clients POSTs of --body-mb MB of JSON at once, to the login and
to the C2B confirmation callback in turn, each on its own connection. Prints the
answers' statuses and the gateway's resident memory (VmRSS) before, and the highest
read while the bodies were sent. The limit is server.max_body_bytes (64 KiB), so
every answer is a 413.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time

import aiohttp

from bench.__main__ import peak_rss_mib, target

# How often the gateway's RSS is read while the bodies are sent.
SAMPLE_SECONDS = 0.005


async def send_at_once(urls: list[str], body: bytes) -> tuple[collections.Counter, float]:
    """POST `body` to every url at once; the statuses (or error names) and seconds."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(url: str) -> str:
            try:
                async with http.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as answer:
                    await answer.read()
                    return str(answer.status)
            except aiohttp.ClientError as error:
                return type(error).__name__

        statuses = collections.Counter(await asyncio.gather(*(post(url) for url in urls)))
    return statuses, time.perf_counter() - started


async def run(clients: int, body_mb: int) -> None:
    body = b'{"padding": "' + b"x" * (body_mb * 1_000_000 - 15) + b'"}'
    async with target("gateway") as gateway:
        url = gateway.info["url"]
        secret = gateway.info["callback_secret"]
        urls = [
            f"{url}/api/v1/auth/token" if number % 2 else f"{url}/api/v1/c2b/confirmation/{secret}"
            for number in range(clients)
        ]
        at_rest = peak_rss_mib(gateway.pid, "VmRSS")
        highest = at_rest
        sending = asyncio.ensure_future(send_at_once(urls, body))
        while not sending.done():
            highest = max(highest, peak_rss_mib(gateway.pid, "VmRSS"))
            await asyncio.sleep(SAMPLE_SECONDS)
        statuses, seconds = sending.result()
    answers = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))
    print(
        f"{clients} concurrent POSTs of {len(body) / 1e6:.0f} MB in {seconds:.1f} s: "
        f"{answers}; gateway RSS {at_rest:.0f} MiB at rest, {highest:.0f} MiB at most "
        f"while they were sent"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--body-mb", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(run(args.clients, args.body_mb))


if __name__ == "__main__":
    main()
