"""A Modbus RTU slave on a serial port (one end of a socat pty pair), for the end-to-end tests of
the Modbus-RTU Protocol Adapter connector and for benchmarks.

    python3 modbus_peer.py PORT [--baud N] [--parity N|E|O] [--stopbits 1|2] [--bytesize 5..8]
                                [--log-requests] [--commands]

It serves two units with the data below, prints one line `ready PORT` on stdout once it is
listening, and runs until SIGTERM/SIGINT. A request to any other unit id gets no reply at all,
as on a real RS-485 bus (pymodbus alone would answer it with an exception). Bytes left in the
port from before it started are dropped, as a device that boots does not see old frames.
With --log-requests it also prints `request UNIT FUNCTION_CODE` on stdout for every request
frame it decodes (answered or not), so that a test can tell what reached the bus.
With --commands it also reads commands from stdin, one a line, so that a test can change what
the device holds while it runs, as a sensor's reading changes:
  set UNIT ADDRESS VALUE [VALUE ...]   write holding registers ADDRESS.. of UNIT
It answers each with one line on stdout, `ok set UNIT ADDRESS`, once the values are in place
(every request decoded after that line is answered from them), or `error LINE: REASON`.

Unit 1 keeps the four Modbus tables apart (pymodbus "non-shared" blocks, bit addressing):
  coils             0..127   COILS[a]       (writable)
  discrete inputs   0..127   DISCRETE[a]
  holding registers 0..99    HOLDING[a]     (writable)
  input registers   0..99    INPUT[a]
Unit 2 is a device with one shared memory (pymodbus "shared" block): holding registers 0..31
UNIT2_REGISTERS[a] are also its input registers, and coil / discrete input address 16*r + b is
bit b (least significant first) of register r.
Any address outside these ranges (or a range running past their end) is answered with Modbus
exception 2, Illegal Data Address.

The tables are module constants so that a test can import them (pymodbus is imported only by
main(), so importing this module is cheap).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

UNIT = 1
UNIT2 = 2

# The first values are easy to recognize; after them a pattern, so that an offset by one shows.
COILS: list[int] = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0] + [
    1 if a % 3 == 0 else 0 for a in range(16, 128)]
DISCRETE: list[int] = [0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1] + [
    1 if a % 5 in (1, 2) else 0 for a in range(16, 128)]
HOLDING: list[int] = [1234, 5678, 9012, 3456, 7890, 65535, 0, 42] + [
    100 * a + 7 for a in range(8, 100)]
INPUT: list[int] = [11 * (a + 1) for a in range(100)]  # 11, 22, 33, ... 1100
UNIT2_REGISTERS: list[int] = [4321, 8765, 0x00FF, 0xA5A5] + [2000 + a for a in range(4, 32)]

COIL_COUNT, DISCRETE_COUNT = len(COILS), len(DISCRETE)
HOLDING_COUNT, INPUT_COUNT, UNIT2_COUNT = len(HOLDING), len(INPUT), len(UNIT2_REGISTERS)


def unit2_bits(address: int, count: int, registers: list[int] | None = None) -> list[int]:
    """Coils / discrete inputs `address`..`address+count-1` of unit 2."""
    regs = UNIT2_REGISTERS if registers is None else registers
    return [(regs[(address + i) // 16] >> ((address + i) % 16)) & 1 for i in range(count)]


def devices():
    from pymodbus.simulator import DataType, SimData, SimDevice

    # Bit blocks are padded to whole registers by pymodbus: keep their length a multiple of 16,
    # so that the first address past the table is really invalid.
    assert COIL_COUNT % 16 == 0 and DISCRETE_COUNT % 16 == 0
    unit1 = SimDevice(
        id=UNIT,
        simdata=(
            [SimData(address=0, values=[bool(v) for v in COILS], datatype=DataType.BITS)],
            [SimData(address=0, values=[bool(v) for v in DISCRETE], datatype=DataType.BITS)],
            [SimData(address=0, values=list(HOLDING), datatype=DataType.REGISTERS)],
            [SimData(address=0, values=list(INPUT), datatype=DataType.REGISTERS)],
        ),
    )
    unit2 = SimDevice(
        id=UNIT2,
        simdata=[SimData(address=0, values=list(UNIT2_REGISTERS), datatype=DataType.REGISTERS)],
        use_bit_addressing=True,
    )
    return [unit1, unit2]


def flush_input(port: str) -> None:
    """Drop what was written to the line while nobody read it."""
    import os
    import termios

    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        termios.tcflush(fd, termios.TCIFLUSH)
    finally:
        os.close(fd)


async def run_commands(server) -> None:
    """Apply the commands of --commands from stdin until it closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        text = line.decode("utf-8", "replace").strip()
        if not text:
            continue
        try:
            verb, unit, address, *values = text.split()
            if verb != "set" or not values:
                raise ValueError("expected `set UNIT ADDRESS VALUE [VALUE ...]`")
            unit, address, regs = int(unit), int(address), [int(v) for v in values]
            if unit not in (UNIT, UNIT2) or not all(0 <= v <= 0xFFFF for v in regs):
                raise ValueError("no such unit, or a value out of 0..65535")
            # Function code 16 selects the holding registers, as a Write Multiple Registers
            # request from the bus would.
            failed = await server.context.async_setValues(unit, 16, address, regs)
            if failed is not None:
                raise ValueError(f"the device refused it: {failed!r}")
        except ValueError as e:
            print(f"error {text}: {e}", flush=True)
            continue
        print(f"ok set {unit} {address}", flush=True)


async def serve(args) -> None:
    from pymodbus import FramerType
    from pymodbus.server import ModbusSerialServer

    known = {UNIT, UNIT2}

    def only_known_units(sending: bool, pdu):
        if sending or pdu is None:
            return pdu
        if args.log_requests:
            print(f"request {pdu.dev_id} {pdu.function_code}", flush=True)
        # Returning None for a received PDU makes the server drop it without answering.
        return pdu if pdu.dev_id in known else None

    flush_input(args.port)

    server = ModbusSerialServer(
        devices(),
        framer=FramerType.RTU,
        port=args.port,
        baudrate=args.baud,
        parity=args.parity,
        stopbits=args.stopbits,
        bytesize=args.bytesize,
        trace_pdu=only_known_units,
        reconnect_delay=0.5,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.shutdown()))
    await server.serve_forever(background=True)
    commands = asyncio.ensure_future(run_commands(server)) if args.commands else None
    print(f"ready {args.port}", flush=True)
    await server.serving
    if commands is not None:
        commands.cancel()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("port", help="serial port path, e.g. one end of a socat pty pair")
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--parity", choices=("N", "E", "O"), default="N")
    p.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    p.add_argument("--bytesize", type=int, choices=(5, 6, 7, 8), default=8)
    p.add_argument("--log-requests", action="store_true",
                   help="print `request UNIT FUNCTION_CODE` for each request frame")
    p.add_argument("--commands", action="store_true",
                   help="read `set UNIT ADDRESS VALUE...` commands from stdin (see above)")
    p.add_argument("--debug", action="store_true", help="pymodbus debug log on stderr")
    args = p.parse_args(argv)
    if args.debug:
        from pymodbus import pymodbus_apply_logging_config

        pymodbus_apply_logging_config("DEBUG")
    try:
        asyncio.run(serve(args))
    except Exception as e:  # e.g. the port cannot be opened or set up  # noqa: BLE001
        print(f"modbus_peer: {args.port}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
