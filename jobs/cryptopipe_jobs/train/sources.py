"""Candles for training, as the frame cryptopipe_model expects (features.CANDLE_COLUMNS).

Sources: the embedded real hourly BTC/USD klines, a Binance kline file, a candle CSV, or parquet
files under a folder (local, or on HDFS over WebHDFS), in the aggregator's layout
`<base>/candles/symbol=<S>/interval=<I>/date=<D>/*.parquet`. Parquet and CSV candles are
deduplicated by window_start (Kafka and Spark deliver at least once) and, when the column is
there, only final candles are kept.
"""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from cryptopipe_jobs.producer.recorded import Kline, load_embedded, load_path
from cryptopipe_model.features import CANDLE_COLUMNS, CandleDataError
from cryptopipe_schemas.spec import CryptoPipelineSpec

EMBEDDED = "embedded"


def _vwap(kline: Kline) -> float:
    """quote_volume / base_volume when both are known, else the typical price (h + l + c) / 3."""
    if kline.quote_volume is not None and kline.volume > 0:
        return float(kline.quote_volume / kline.volume)
    return float((kline.high + kline.low + kline.close) / Decimal(3))


def klines_to_frame(klines: Sequence[Kline]) -> pd.DataFrame:
    """Klines -> candle frame, one row per kline, in their order."""
    return pd.DataFrame(
        {
            "window_start": pd.to_datetime([k.open_time_ms for k in klines], unit="ms", utc=True),
            "open": [float(k.open) for k in klines],
            "high": [float(k.high) for k in klines],
            "low": [float(k.low) for k in klines],
            "close": [float(k.close) for k in klines],
            "base_volume": [float(k.volume) for k in klines],
            "quote_volume": [
                float(k.quote_volume) if k.quote_volume is not None else float(k.volume * k.close)
                for k in klines
            ],
            "vwap": [_vwap(k) for k in klines],
            "trade_count": [k.trade_count or 0 for k in klines],
        },
        columns=list(CANDLE_COLUMNS),
    )


def normalize_candles(frame: pd.DataFrame) -> pd.DataFrame:
    """Candle records (parquet or CSV) -> the model's frame: final rows only, one per
    window_start (the last one delivered wins), sorted, UTC datetimes."""
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise CandleDataError(f"missing columns: {', '.join(missing)}")
    if "is_final" in frame.columns:
        frame = frame[frame["is_final"].astype(bool)]
    starts = frame["window_start"]
    if pd.api.types.is_integer_dtype(starts):
        window_start = pd.to_datetime(starts, unit="ms", utc=True)
    else:
        window_start = pd.to_datetime(starts, utc=True)
    out = frame[list(CANDLE_COLUMNS)].assign(window_start=window_start)
    out = out.drop_duplicates("window_start", keep="last").sort_values("window_start")
    return out.reset_index(drop=True)


def default_candles(spec: CryptoPipelineSpec, hdfs_url: str | None) -> str:
    """The aggregator's HDFS folder for the pipeline's symbol and the model's interval."""
    base = spec.sinks.hdfs.path.rstrip("/")
    fs = (hdfs_url or "hdfs://").rstrip("/")
    return f"{fs}{base}/candles/symbol={spec.symbol}/interval={spec.model.interval}"


def is_data_file(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith(("_", "."))


def _concat(tables: list[pd.DataFrame], where: str) -> pd.DataFrame:
    if not tables:
        raise CandleDataError(f"no parquet files under {where}")
    return normalize_candles(pd.concat(tables, ignore_index=True))


def read_local_parquet_folder(folder: Path) -> pd.DataFrame:
    """Every *.parquet file under a local folder (partition folders included)."""
    files = sorted(
        Path(root) / name
        for root, _, names in os.walk(folder)
        for name in names
        if is_data_file(name)
    )
    return _concat([pq.read_table(path).to_pandas() for path in files], str(folder))


def read_hdfs_parquet_folder(client: Any, folder: str) -> pd.DataFrame:
    """Every *.parquet file under an HDFS folder, read over WebHDFS."""
    if client.status(folder, strict=False) is None:
        raise CandleDataError(f"no candles on HDFS: {folder} does not exist")
    tables = []
    for root, _, names in client.walk(folder):
        for name in sorted(names):
            if is_data_file(name):
                with client.read(posixpath.join(root, name)) as reader:
                    tables.append(pq.read_table(io.BytesIO(reader.read())).to_pandas())
    return _concat(tables, folder)


def read_local(path: Path) -> pd.DataFrame:
    """A folder or file of parquet candles, a candle CSV (header with window_start), or a
    Binance kline file (CSV or zip, as load_path reads it)."""
    if path.is_dir():
        return read_local_parquet_folder(path)
    if path.suffix == ".parquet":
        return normalize_candles(pq.read_table(path).to_pandas())
    if path.suffix in (".csv", ".gz"):
        head = pd.read_csv(path, nrows=0)
        if "window_start" in head.columns:
            return normalize_candles(pd.read_csv(path))
    loaded = load_path(path)
    klines = [k for k in loaded if isinstance(k, Kline)]
    if len(klines) != len(loaded):
        raise CandleDataError(f"{path} holds trades, not candles")
    return klines_to_frame(klines)


def read_embedded() -> pd.DataFrame:
    return klines_to_frame(load_embedded())
