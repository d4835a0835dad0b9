"""Raw Modbus RTU transactions with a pymodbus client, for the Modbus benchmark (benches/modbus.rs).

    python3 modbus_raw.py PORT [--baud N] [--count N] [--warmup N] [--client sync|async]

Performs WARMUP then COUNT sequential read_holding_registers(0, count=10, device_id=1) on PORT,
checks every answer against the peer's known registers, and prints one JSON line:
{"client", "pymodbus", "n", "tx_s", "mean_us", "p50_us", "p99_us", "note"}.

`sync` is pymodbus's ModbusSerialClient, with its defaults (what a user gets); `async` is its
AsyncModbusSerialClient. Exit status 1 (and a message on stderr) if a transaction fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

# modbus_peer.py's holding registers 0..9 of unit 1.
EXPECTED = [1234, 5678, 9012, 3456, 7890, 65535, 0, 42, 807, 907]
UNIT, ADDRESS, COUNT = 1, 0, 10

SYNC_NOTE = (
    "pymodbus's sync serial client polls the port for the reply: it sleeps max(4 character "
    "times, 1 ms) between polls and ends a frame only after a poll that finds no new byte, so "
    "each transaction costs at least about 2 ms whatever the line does; these are its defaults")


def check(r, i: int) -> None:
    if r.isError() or list(r.registers) != EXPECTED:
        raise RuntimeError(f"transaction {i}: unexpected answer {r}")


def summary(client: str, lat_ns: list[int], elapsed_ns: int, note: str) -> dict:
    import pymodbus

    s = sorted(lat_ns)
    pick = lambda p: s[round((len(s) - 1) * p)] / 1000  # noqa: E731  (as the Rust side)
    return {
        "client": client,
        "pymodbus": pymodbus.__version__,
        "n": len(s),
        "tx_s": len(s) / (elapsed_ns / 1e9),
        "mean_us": sum(s) / len(s) / 1000,
        "p50_us": pick(0.5),
        "p99_us": pick(0.99),
        "note": note,
    }


def run_sync(args) -> dict:
    from pymodbus import FramerType
    from pymodbus.client import ModbusSerialClient

    c = ModbusSerialClient(args.port, framer=FramerType.RTU, baudrate=args.baud)
    if not c.connect():
        raise RuntimeError(f"cannot open {args.port}")
    try:
        for i in range(args.warmup):
            check(c.read_holding_registers(ADDRESS, count=COUNT, device_id=UNIT), i)
        lat = []
        start = time.perf_counter_ns()
        for i in range(args.count):
            t = time.perf_counter_ns()
            r = c.read_holding_registers(ADDRESS, count=COUNT, device_id=UNIT)
            lat.append(time.perf_counter_ns() - t)
            check(r, i)
        elapsed = time.perf_counter_ns() - start
    finally:
        c.close()
    return summary("pymodbus-sync", lat, elapsed, SYNC_NOTE)


async def run_async(args) -> dict:
    from pymodbus import FramerType
    from pymodbus.client import AsyncModbusSerialClient

    c = AsyncModbusSerialClient(args.port, framer=FramerType.RTU, baudrate=args.baud)
    if not await c.connect():
        raise RuntimeError(f"cannot open {args.port}")
    try:
        for i in range(args.warmup):
            check(await c.read_holding_registers(ADDRESS, count=COUNT, device_id=UNIT), i)
        lat = []
        start = time.perf_counter_ns()
        for i in range(args.count):
            t = time.perf_counter_ns()
            r = await c.read_holding_registers(ADDRESS, count=COUNT, device_id=UNIT)
            lat.append(time.perf_counter_ns() - t)
            check(r, i)
        elapsed = time.perf_counter_ns() - start
    finally:
        c.close()
    return summary("pymodbus-async", lat, elapsed, "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("port")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--client", choices=("sync", "async"), default="sync")
    args = p.parse_args(argv)
    try:
        result = run_sync(args) if args.client == "sync" else asyncio.run(run_async(args))
    except Exception as e:  # noqa: BLE001  (the benchmark prints why and goes on)
        print(f"modbus_raw: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
