"""A minimal Thrift (binary protocol, unframed) client for one call: the metastore's
`get_all_databases`. Enough to prove the metastore answers as Spark's Hive client would ask."""

from __future__ import annotations

import socket
import struct

_VERSION_1 = 0x80010000
_CALL, _REPLY, _EXCEPTION = 1, 2, 3
_STOP, _STRING, _STRUCT, _LIST = 0, 11, 12, 15


def _call_message(method: str, seqid: int = 1) -> bytes:
    name = method.encode()
    return (
        struct.pack(">II", _VERSION_1 | _CALL, len(name))
        + name
        + struct.pack(">i", seqid)
        + (bytes([_STOP]))
    )


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def take(self, size: int) -> bytes:
        chunks = b""
        while len(chunks) < size:
            chunk = self._sock.recv(size - len(chunks))
            if not chunk:
                raise ConnectionError("metastore closed the connection")
            chunks += chunk
        return chunks

    def i32(self) -> int:
        value: int = struct.unpack(">i", self.take(4))[0]
        return value

    def string(self) -> str:
        return self.take(self.i32()).decode()


def get_all_databases(host: str, port: int, timeout: float = 5.0) -> list[str]:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_call_message("get_all_databases"))
        reader = _Reader(sock)
        header = reader.i32() & 0xFF
        reader.string()  # method name
        reader.i32()  # seqid
        if header != _REPLY:
            raise ConnectionError(f"metastore answered message type {header}")
        field_type = reader.take(1)[0]
        field_id = struct.unpack(">h", reader.take(2))[0]
        if field_type != _LIST or field_id != 0:
            raise ConnectionError(f"metastore raised an exception (field {field_id})")
        element_type = reader.take(1)[0]
        if element_type != _STRING:
            raise ConnectionError(f"unexpected list element type {element_type}")
        return [reader.string() for _ in range(reader.i32())]
