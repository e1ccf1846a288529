#!/usr/bin/env python3
"""Opens N concurrent TCP connections to an echo server, sends a distinct line on each, checks
each echo, keeps every connection open until all have echoed, then closes them all.

usage: echo_clients.py HOST PORT N   -> prints "echoed N/N" and exits 0 on success
"""
import asyncio
import resource
import sys


async def main(host: str, port: int, n: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    all_echoed = asyncio.Event()
    done = 0
    connect_gate = asyncio.Semaphore(500)

    async def one(i: int):
        nonlocal done
        async with connect_gate:
            reader, writer = await asyncio.open_connection(host, port)
        msg = f"hello {i}\n".encode()
        writer.write(msg)
        await writer.drain()
        got = await reader.readexactly(len(msg))
        if got != msg:
            raise RuntimeError(f"connection {i}: got {got!r}")
        done += 1
        if done == n:
            all_echoed.set()
        await all_echoed.wait()
        writer.close()
        await writer.wait_closed()

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout=120)
    print(f"echoed {done}/{n}")
    return 0 if done == n else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
