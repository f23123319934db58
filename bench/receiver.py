"""The client's callback endpoint, in its own process: `python -m bench.receiver PORT SECRETS.json`.

A small asyncio HTTP/1.1 server (keep-alive) that checks each callback's Standard Webhooks
signature, notes its arrival time (time.monotonic(), comparable with the load generator's) and
answers 204. `GET /_bench/count` says how many callbacks arrived, `GET /_bench/records` returns
them all as columns.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import signal
import sys
import time
from pathlib import Path

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
UNAUTHORIZED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"


class Callbacks:
    def __init__(self, secrets: dict[str, str]):
        self.keys = {
            client: base64.b64decode(secret.removeprefix("whsec_")) for client, secret in secrets.items()
        }
        self.columns: dict[str, list] = {"task_id": [], "result_id": [], "outcome": [], "arrived": []}
        self.bad_signatures = 0

    def accept(self, client_id: str, headers: dict[bytes, bytes], body: bytes, arrived: float) -> bool:
        if not self._signed(client_id, headers, body):
            self.bad_signatures += 1
            return False
        data = json.loads(body)["data"]
        for column, value in (
            ("task_id", data["task_id"]),
            ("result_id", data["result_id"]),
            ("outcome", data["outcome"]),
            ("arrived", arrived),
        ):
            self.columns[column].append(value)
        return True

    def _signed(self, client_id: str, headers: dict[bytes, bytes], body: bytes) -> bool:
        key = self.keys.get(client_id)
        webhook_id, timestamp = headers.get(b"webhook-id"), headers.get(b"webhook-timestamp")
        if key is None or webhook_id is None or timestamp is None:
            return False
        expected = base64.b64encode(
            hmac.new(key, webhook_id + b"." + timestamp + b"." + body, hashlib.sha256).digest()
        )
        offered = headers.get(b"webhook-signature", b"").split(b" ")
        return any(hmac.compare_digest(b"v1," + expected, signature) for signature in offered)

    def summary(self) -> bytes:
        return json.dumps(
            {"callbacks": len(self.columns["arrived"]), "bad_signatures": self.bad_signatures}
        ).encode()

    def records(self) -> bytes:
        return json.dumps({**self.columns, "bad_signatures": self.bad_signatures}).encode()


def json_response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *lines = head[:-4].split(b"\r\n")
    method, path, _ = request_line.split(b" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", 0))
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


def handler(callbacks: Callbacks):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                method, path, headers, body = await read_request(reader)
                arrived = time.monotonic()
                if method == b"POST" and path.startswith(b"/callbacks/"):
                    client_id = path.removeprefix(b"/callbacks/").decode()
                    ok = callbacks.accept(client_id, headers, body, arrived)
                    writer.write(NO_CONTENT if ok else UNAUTHORIZED)
                elif path == b"/_bench/count":
                    writer.write(json_response(callbacks.summary()))
                elif path == b"/_bench/records":
                    writer.write(json_response(callbacks.records()))
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                if headers.get(b"connection", b"").lower() == b"close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the dispatcher closed its connection
        finally:
            writer.close()

    return handle


async def serve(port: int, secrets: dict[str, str]) -> None:
    server = await asyncio.start_server(handler(Callbacks(secrets)), "127.0.0.1", port, backlog=256)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    port, secrets_path = int(sys.argv[1]), sys.argv[2]
    asyncio.run(serve(port, json.loads(Path(secrets_path).read_text())))


if __name__ == "__main__":
    main()
