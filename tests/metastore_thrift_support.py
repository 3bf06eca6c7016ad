"""A small Thrift client (binary protocol, unframed, as the Hive metastore speaks it) for the
few metastore calls the tests make: create a database and a table, read them back.

Values to send are typed: `Typed(STRING, "x")`, structs as `{field id: Typed}`, lists as
`Typed(LIST, (element type, [values]))`, maps as `Typed(MAP, (key type, value type, {...}))`.
Replies are decoded without a schema: structs become `{field id: value}`, strings `str` (bytes
when not UTF-8), lists `list`, maps `dict`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STOP, BOOL, BYTE, DOUBLE, I16, I32, I64 = 0, 2, 3, 4, 6, 8, 10
STRING, STRUCT, MAP, SET, LIST = 11, 12, 13, 14, 15
_VERSION_1 = 0x80010000
_CALL, _REPLY, _EXCEPTION = 1, 2, 3
_FIXED = {BOOL: ">?", BYTE: ">b", DOUBLE: ">d", I16: ">h", I32: ">i", I64: ">q"}


@dataclass(frozen=True)
class Typed:
    type: int
    value: Any


class MetastoreError(Exception):
    """The call answered with an exception: a declared one (its field id and struct) or a
    TApplicationException (field id 0)."""

    def __init__(self, method: str, field: int, detail: Any) -> None:
        super().__init__(f"{method}: exception field {field}: {detail}")
        self.field = field
        self.detail = detail


def encode(item: Typed) -> bytes:
    kind, value = item.type, item.value
    if kind in _FIXED:
        return struct.pack(_FIXED[kind], value)
    if kind == STRING:
        data = value if isinstance(value, bytes) else str(value).encode()
        return struct.pack(">i", len(data)) + data
    if kind == STRUCT:
        return encode_struct(value)
    if kind in (LIST, SET):
        element, values = value
        head = struct.pack(">bi", element, len(values))
        return head + b"".join(encode(Typed(element, v)) for v in values)
    if kind == MAP:
        key, element, pairs = value
        head = struct.pack(">bbi", key, element, len(pairs))
        body = b"".join(encode(Typed(key, k)) + encode(Typed(element, v)) for k, v in pairs.items())
        return head + body
    raise ValueError(f"unknown Thrift type {kind}")


def encode_struct(fields: Mapping[int, Typed]) -> bytes:
    parts = [
        struct.pack(">bh", typed.type, field) + encode(typed) for field, typed in fields.items()
    ]
    return b"".join(parts) + bytes([STOP])


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def take(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the metastore closed the connection")
            data += chunk
        return data

    def fixed(self, kind: int) -> Any:
        fmt = _FIXED[kind]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def value(self, kind: int) -> Any:
        if kind in _FIXED:
            return self.fixed(kind)
        if kind == STRING:
            data = self.take(self.fixed(I32))
            try:
                return data.decode()
            except UnicodeDecodeError:
                return data
        if kind == STRUCT:
            return self.struct()
        if kind in (LIST, SET):
            element, size = self.fixed(BYTE), self.fixed(I32)
            return [self.value(element) for _ in range(size)]
        if kind == MAP:
            key, element, size = self.fixed(BYTE), self.fixed(BYTE), self.fixed(I32)
            return {self.value(key): self.value(element) for _ in range(size)}
        raise ValueError(f"unknown Thrift type {kind}")

    def struct(self) -> dict[int, Any]:
        fields: dict[int, Any] = {}
        while (kind := self.fixed(BYTE)) != STOP:
            field = self.fixed(I16)
            fields[field] = self.value(kind)
        return fields


def call(host: str, port: int, method: str, args: Mapping[int, Typed], timeout: float = 30) -> Any:
    """One call; the reply's success value (None for a void method), or MetastoreError."""
    name = method.encode()
    message = struct.pack(">Ii", _VERSION_1 | _CALL, len(name)) + name + struct.pack(">i", 1)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(message + encode_struct(args))
        reader = _Reader(sock)
        kind = reader.fixed(I32) & 0xFF
        reader.take(reader.fixed(I32))  # the method's name
        reader.fixed(I32)  # sequence id
        result = reader.struct()
    if kind == _EXCEPTION:
        raise MetastoreError(method, 0, result)
    if kind != _REPLY:
        raise ConnectionError(f"{method}: message type {kind}")
    errors = {field: value for field, value in result.items() if field != 0}
    if errors:
        field, detail = next(iter(errors.items()))
        raise MetastoreError(method, field, detail)
    return result.get(0)


def _string(value: str) -> Typed:
    return Typed(STRING, value)


def _strings(pairs: Mapping[str, str]) -> Typed:
    return Typed(MAP, (STRING, STRING, dict(pairs)))


def create_database(host: str, port: int, name: str) -> None:
    """A database at the warehouse's default location (the metastore makes its folder)."""
    database = {1: _string(name), 2: _string("cryptopipe test"), 4: _strings({})}
    call(host, port, "create_database", {1: Typed(STRUCT, database)})


def create_text_table(
    host: str, port: int, database: str, table: str, columns: dict[str, str]
) -> None:
    """A managed text table at its default location (the metastore makes its folder)."""
    schema = [{1: _string(name), 2: _string(kind)} for name, kind in columns.items()]
    serde = {
        1: _string(table),
        2: _string("org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"),
        3: _strings({"serialization.format": "1"}),
    }
    storage = {
        1: Typed(LIST, (STRUCT, schema)),
        3: _string("org.apache.hadoop.mapred.TextInputFormat"),
        4: _string("org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"),
        5: Typed(BOOL, False),
        6: Typed(I32, -1),
        7: Typed(STRUCT, serde),
        8: Typed(LIST, (STRING, [])),
        9: Typed(LIST, (STRUCT, [])),
        10: _strings({}),
    }
    definition = {
        1: _string(table),
        2: _string(database),
        3: _string("cryptopipe-test"),
        4: Typed(I32, 0),
        5: Typed(I32, 0),
        6: Typed(I32, 0),
        7: Typed(STRUCT, storage),
        8: Typed(LIST, (STRUCT, [])),
        9: _strings({}),
        12: _string("MANAGED_TABLE"),
    }
    call(host, port, "create_table", {1: Typed(STRUCT, definition)})


@dataclass(frozen=True)
class Table:
    database: str
    name: str
    columns: dict[str, str]
    location: str
    table_type: str


def get_table(host: str, port: int, database: str, table: str) -> Table:
    found = call(host, port, "get_table", {1: _string(database), 2: _string(table)})
    storage = found[7]
    return Table(
        database=found[2],
        name=found[1],
        columns={column[1]: column[2] for column in storage[1]},
        location=storage[2],
        table_type=found[12],
    )


def get_database_location(host: str, port: int, name: str) -> str:
    location: str = call(host, port, "get_database", {1: _string(name)})[3]
    return location


def get_all_databases(host: str, port: int) -> list[str]:
    databases: list[str] = call(host, port, "get_all_databases", {})
    return databases


def get_partition_names(host: str, port: int, database: str, table: str) -> list[str]:
    """Every partition's name (`symbol=X/interval=1h/date=...`) of a table."""
    args = {1: _string(database), 2: _string(table), 3: Typed(I16, -1)}
    names: list[str] = call(host, port, "get_partition_names", args)
    return names
