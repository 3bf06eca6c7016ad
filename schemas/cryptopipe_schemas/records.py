"""Avro records as typed Python values: what `codec.encode` takes for a schema of avro/."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TypedDict


class TradeRecord(TypedDict):
    """A Trade (avro/Trade.avsc), field for field: decimals at scale 8, aware UTC datetimes."""

    exchange: str
    symbol: str
    trade_id: int
    price: Decimal
    quantity: Decimal
    buyer_is_maker: bool
    trade_time: dt.datetime
    event_time: dt.datetime
    ingest_time: dt.datetime
