"""The database gateway in front of SecantusDB (the embedded database engine).

SecantusDB listens on a private loopback port; this program listens on the
node's database port and relays MongoDB wire messages both ways unchanged. It
answers two commands itself, because the engine runs them without checking the
caller's rights, so a tenant could write to or read another tenant's database:

- `bulkWrite` (MongoClient.bulk_write; Collection.bulk_write does not use it),
- `renameCollection` from one database to another.

Both are answered with an Unauthorized error and never reach the engine. Only
OP_MSG and OP_QUERY (the legacy handshake, inspected the same way) are
relayed: other opcodes, and
OP_COMPRESSED above all, cannot be inspected, so their connection is closed.
SecantusDB offers no compressors in its handshake, so drivers never compress.

Message bodies are streamed; only a command's first document is read whole.
Run as `python db_gateway.py --listen HOST:PORT --upstream-port-file FILE`.
"""

import argparse
import asyncio
import logging
import signal
import struct
import sys
from pathlib import Path

import bson
import uvloop

# Run as a script, its own folder would come first on the path.
sys.path[0] = str(Path(__file__).resolve().parents[2])

from corestore_project.logs import (  # noqa: E402
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    printable,
)

logger = logging.getLogger("corestore.dbgateway")

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013
MORE_TO_COME = 1 << 1
HEADER = struct.Struct("<iiii")
INT32 = struct.Struct("<i")
# The engine's own limit; a larger length is a broken or hostile frame.
MAX_MESSAGE_BYTES = 48_000_000
CHUNK = 1024 * 1024
UNAUTHORIZED = 13


def command_name(document: bytes) -> bytes:
    """The first key of a raw BSON document: the command it runs."""
    if len(document) < 6 or document[4] == 0:
        return b""
    end = document.find(b"\x00", 5)
    return document[5:end] if end > 0 else b""


def database_of(namespace) -> str | None:
    return namespace.partition(".")[0] if isinstance(namespace, str) else None


def refusal_reason(command: bytes) -> str | None:
    """Why the engine must not see this command document, or None."""
    name = command_name(command)
    if name == b"bulkWrite":
        return (
            "bulkWrite (MongoClient.bulk_write) is not supported by the embedded "
            "database engine; use Collection.bulk_write"
        )
    if name != b"renameCollection":
        return None
    try:
        fields = bson.decode(command)
    except Exception:  # noqa: BLE001 - the engine refuses what it cannot decode
        return None
    source = database_of(fields.get("renameCollection"))
    target = database_of(fields.get("to"))
    if source is not None and target is not None and source != target:
        return (
            "renameCollection across databases is not supported by the embedded "
            "database engine"
        )
    return None


def error_reply(request_id: int, reason: str) -> bytes:
    body = bson.encode(
        {"ok": 0.0, "errmsg": reason, "code": UNAUTHORIZED, "codeName": "Unauthorized"}
    )
    payload = struct.pack("<IB", 0, 0) + body
    return HEADER.pack(HEADER.size + len(payload), 0, request_id, OP_MSG) + payload


def op_reply(request_id: int, reason: str) -> bytes:
    """The legacy OP_REPLY form of error_reply, the answer to an OP_QUERY."""
    body = bson.encode(
        {"ok": 0.0, "errmsg": reason, "code": UNAUTHORIZED, "codeName": "Unauthorized"}
    )
    # responseFlags, cursorID, startingFrom, numberReturned.
    payload = struct.pack("<iqii", 0, 0, 0, 1) + body
    return HEADER.pack(HEADER.size + len(payload), 0, request_id, OP_REPLY) + payload


def query_command(body: bytes) -> tuple[bytes, bytes] | None:
    """(collection, command document) of an OP_QUERY body, None if malformed."""
    end = body.find(b"\x00", 4)
    start = end + 9  # the name's NUL, numberToSkip, numberToReturn
    if end < 0 or start + 5 > len(body):
        return None
    length = INT32.unpack_from(body, start)[0]
    if length < 5 or start + length > len(body):
        return None
    return body[4:end], body[start : start + length]


class ClosedByGateway(Exception):
    """A client frame the gateway will not relay; the connection is closed."""


class Connection:
    def __init__(self, client_reader, client_writer, upstream_reader, upstream_writer):
        self.client_reader, self.client_writer = client_reader, client_writer
        self.upstream_reader, self.upstream_writer = upstream_reader, upstream_writer
        # Refusals and the engine's replies share the client stream: a refusal
        # must never land inside a reply that is being streamed.
        self.client_lock = asyncio.Lock()

    async def relay_requests(self) -> None:
        while True:
            header = await self.client_reader.readexactly(HEADER.size)
            length, request_id, _, op_code = HEADER.unpack(header)
            if not HEADER.size < length <= MAX_MESSAGE_BYTES:
                raise ClosedByGateway(f"message length {length}")
            if op_code == OP_MSG:
                await self.relay_op_msg(header, length, request_id)
            elif op_code == OP_QUERY:
                await self.relay_op_query(header, length, request_id)
            else:
                raise ClosedByGateway(f"opcode {op_code} cannot be inspected")

    async def relay_op_msg(self, header: bytes, length: int, request_id: int) -> None:
        # flagBits, then the body section (kind 0), which drivers send first.
        if length < HEADER.size + 4 + 1 + 5:
            raise ClosedByGateway("OP_MSG too short")
        start = await self.client_reader.readexactly(9)
        flags, kind = struct.unpack_from("<IB", start)
        body_length = INT32.unpack_from(start, 5)[0]
        remaining = length - HEADER.size - len(start) - body_length + 4
        if kind != 0 or body_length < 5 or remaining < 0:
            raise ClosedByGateway("OP_MSG does not start with its body section")
        body = start[5:] + await self.client_reader.readexactly(body_length - 4)

        reason = refusal_reason(body)
        if reason is None:
            self.upstream_writer.write(header + start[:5] + body)
            await self.pipe(self.client_reader, self.upstream_writer, remaining)
            return
        await self.discard(remaining)
        logger.warning(
            "refused %s", printable(command_name(body).decode(errors="replace"))
        )
        if not flags & MORE_TO_COME:
            await self.reply(error_reply(request_id, reason))

    async def relay_op_query(self, header: bytes, length: int, request_id: int):
        # Only the handshake uses OP_QUERY today; such frames are small.
        body = await self.client_reader.readexactly(length - HEADER.size)
        parsed = query_command(body)
        if parsed is None:
            raise ClosedByGateway("malformed OP_QUERY")
        collection, command = parsed
        reason = refusal_reason(command) if collection.endswith(b".$cmd") else None
        if reason is None:
            self.upstream_writer.write(header + body)
            await self.upstream_writer.drain()
            return
        logger.warning(
            "refused %s", printable(command_name(command).decode(errors="replace"))
        )
        await self.reply(op_reply(request_id, reason))

    async def relay_replies(self) -> None:
        reader = self.upstream_reader
        while True:
            header = await reader.readexactly(HEADER.size)
            length = INT32.unpack_from(header)[0]
            if not HEADER.size <= length <= MAX_MESSAGE_BYTES + HEADER.size:
                raise ClosedByGateway(f"engine sent a message of {length} bytes")
            async with self.client_lock:
                self.client_writer.write(header)
                await self.pipe(reader, self.client_writer, length - HEADER.size)

    async def reply(self, message: bytes) -> None:
        async with self.client_lock:
            self.client_writer.write(message)
            await self.client_writer.drain()

    async def pipe(self, reader, writer, count: int) -> None:
        while count > 0:
            chunk = await reader.read(min(count, CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", count)
            writer.write(chunk)
            count -= len(chunk)
            await writer.drain()
        await writer.drain()

    async def discard(self, count: int) -> None:
        while count > 0:
            chunk = await self.client_reader.read(min(count, CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", count)
            count -= len(chunk)


async def handle(client_reader, client_writer, upstream_port: int) -> None:
    try:
        upstream = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError as exc:
        logger.warning("database engine unreachable: %s", exc)
        client_writer.close()
        return
    connection = Connection(client_reader, client_writer, *upstream)
    tasks = [
        asyncio.create_task(connection.relay_requests()),
        asyncio.create_task(connection.relay_replies()),
    ]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in tasks:
        try:
            await task
        except ClosedByGateway as exc:
            logger.warning("closing a client connection: %s", exc)
        except (asyncio.CancelledError, asyncio.IncompleteReadError, OSError):
            pass
    for writer in (client_writer, connection.upstream_writer):
        writer.close()


async def serve(args) -> None:
    upstream_port = int(Path(args.upstream_port_file).read_text().strip())
    host, _, port = args.listen.rpartition(":")
    server = await asyncio.start_server(
        lambda reader, writer: handle(reader, writer, upstream_port),
        host.strip("[]") or None,
        int(port),
        limit=CHUNK,
    )
    logger.info("database gateway on %s, engine on port %s", args.listen, upstream_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument(
        "--upstream-port-file", required=True, help="file with the engine's port"
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if args.log_format == "json" else TextFormatter()
    )
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
