"""The CryptoPipeline spec (group cryptopipe.io, version v1alpha1) as typed, validated classes.

The single source of truth for what a pipeline may say: the operator, the local runner and the
jobs read specs through `parse_spec`, and the CRD's schema is generated from the same field
metadata (`doc`, `pattern`, `minimum`, `maximum`, `enum`). Keys are camelCase, as in Kubernetes.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from cryptopipe_schemas.durations import (
    FOREVER,
    RETENTION_PATTERN,
    WATERMARK_UNITS,
    duration_pattern,
    parse_interval,
    parse_retention,
)
from cryptopipe_schemas.quantities import QUANTITY_PATTERN
from cryptopipe_schemas.topics import INTERVAL_PATTERN, SYMBOL_PATTERN

# The watermark in the grammar of durations.parse_duration, up to hours.
DURATION_PATTERN = duration_pattern(WATERMARK_UNITS)
CRON_PATTERN = r"^(\S+\s+){4}\S+$"
# Bounds on every string and list: the CRD carries them too, so that its CEL rules fit the API
# server's cost budget (an unbounded list of unbounded strings makes `exists` too costly).
MAX_STRING = 253
MAX_ITEMS = 16
# A DNS label short enough for the pool's child names (`<pool>-aggregator-pool-driver`).
POOL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$"
DNS_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class SpecError(ValueError):
    """An invalid spec; `problems` lists each as `path: what is wrong`, in words."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def spec_field(doc: str, default: Any = dataclasses.MISSING, **rules: Any) -> Any:
    """A dataclass field with its documentation and validation rules."""
    metadata = {"doc": doc, **rules}
    if isinstance(default, list | dict):
        template = default
        return field(default_factory=lambda: copy.deepcopy(template), metadata=metadata)
    return field(default=default, metadata=metadata)


class Isolation(StrEnum):
    SHARED = "shared"
    DEDICATED = "dedicated"


class SourceKind(StrEnum):
    BINANCE = "binance"
    REPLAY = "replay"
    SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class SecretKeyRef:
    name: str = spec_field(
        "Name of a Secret in the pipeline's namespace.", pattern=DNS_NAME_PATTERN
    )
    key: str = spec_field("Key inside the Secret.", "service-account.json")


@dataclass(frozen=True)
class ReplaySource:
    data: str = spec_field(
        "Recorded data to replay: `embedded` (the bundled real history) or a file path.",
        "embedded",
    )
    speed: float = spec_field(
        "Replay speed: 1 is real time, N is N times faster, 0 is as fast as possible.",
        0.0,
        minimum=0,
    )
    shift_to_now: bool = spec_field(
        "Shift event times so that the recording ends now (else keep the recorded times).",
        False,
    )
    tail: int = spec_field(
        "Replay only the newest N records of the recording (klines or trades); 0 replays all.",
        0,
        minimum=0,
    )


@dataclass(frozen=True)
class SyntheticSource:
    """A seeded random walk, live: for tests and benchmarks of many symbols, never market data
    (its records say exchange `synthetic`)."""

    rate: float = spec_field(
        "Mean trades per second outside bursts.", 10.0, minimum=0.001, maximum=10000
    )
    seed: int = spec_field("Seed of the walk (with the symbol and the resume point).", 0)
    start_price: float = spec_field("The first price.", 100.0, minimum=0.00001)
    volatility: float = spec_field(
        "Standard deviation of the log price per square root of a second.",
        0.0005,
        minimum=0,
        maximum=1,
    )
    burst_factor: float = spec_field(
        "How many times faster trades arrive during a burst.", 5.0, minimum=1, maximum=100
    )
    burst_seconds: float = spec_field("Mean length of a burst, in seconds.", 10.0, minimum=0.1)
    calm_seconds: float = spec_field("Mean time between bursts, in seconds.", 120.0, minimum=0.1)


@dataclass(frozen=True)
class Source:
    kind: SourceKind = spec_field(
        "Where trades come from: binance (live), replay (a recording) or synthetic (a seeded "
        "random walk, not market data).",
        SourceKind.BINANCE,
    )
    replay: ReplaySource = spec_field("Replay settings, used when kind is replay.", ReplaySource())
    synthetic: SyntheticSource = spec_field(
        "Random-walk settings, used when kind is synthetic.", SyntheticSource()
    )


@dataclass(frozen=True)
class HdfsSink:
    enabled: bool = spec_field("Write candles as parquet to HDFS.", True)
    path: str = spec_field("Base folder on HDFS.", "/cryptopipe", pattern=r"^/.*")


@dataclass(frozen=True)
class HiveSink:
    enabled: bool = spec_field("Keep Hive tables over the parquet data.", True)
    database: str = spec_field("Hive database.", "cryptopipe", pattern=r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class KafkaSink:
    enabled: bool = spec_field("Publish finalized candles to candles.<interval>.<symbol>.", True)
    partitions: int = spec_field("Partitions of each topic.", 1, minimum=1, maximum=64)
    replication: int = spec_field("Replication factor of each topic.", 1, minimum=1, maximum=5)


@dataclass(frozen=True)
class SheetsSink:
    enabled: bool = spec_field("Append finalized candles to a Google Sheet.", False)
    spreadsheet_id: str | None = spec_field("The spreadsheet's id (from its URL).", None)
    secret_ref: SecretKeyRef | None = spec_field(
        "Secret holding the Google service account's JSON key.", None
    )


@dataclass(frozen=True)
class Sinks:
    hdfs: HdfsSink = spec_field("HDFS parquet sink.", HdfsSink())
    hive: HiveSink = spec_field("Hive tables.", HiveSink())
    kafka: KafkaSink = spec_field("Aggregates topics.", KafkaSink())
    sheets: SheetsSink = spec_field("Google Sheets sink.", SheetsSink())


@dataclass(frozen=True)
class ModelSpec:
    interval: str = spec_field(
        "Candle interval the model forecasts.", "1h", pattern=INTERVAL_PATTERN.pattern
    )
    lookback: int = spec_field("Candles the model reads per forecast.", 48, minimum=2, maximum=2000)
    horizon: int = spec_field("Candles ahead it forecasts.", 6, minimum=1, maximum=500)
    schedule: str = spec_field("Cron schedule of retraining.", "0 */6 * * *", pattern=CRON_PATTERN)
    layers: int = spec_field("LSTM layers.", 2, minimum=1, maximum=8)
    units: int = spec_field("Units per LSTM layer.", 32, minimum=1, maximum=1024)
    dropout: float = spec_field("Dropout between layers.", 0.1, minimum=0, maximum=0.9)
    learning_rate: float = spec_field("Adam learning rate.", 0.001, minimum=0, maximum=1)
    epochs: int = spec_field("Most training epochs (early stopping may end sooner).", 30, minimum=1)
    batch_size: int = spec_field("Training batch size.", 64, minimum=1, maximum=4096)
    coverage: float = spec_field(
        "Nominal coverage of prediction intervals.", 0.9, minimum=0.5, maximum=0.99
    )
    history: int = spec_field(
        "Train and evaluate on at most the newest N candles; 0 takes all of them.", 0, minimum=0
    )
    test_size: int = spec_field(
        "Forecast origins the walk-forward evaluation scores (the newest candles); training "
        "waits until lookback, horizon and these many candles exist.",
        3000,
        minimum=1,
    )
    folds: int = spec_field("Walk-forward folds over the test origins.", 5, minimum=1, maximum=50)


@dataclass(frozen=True)
class DashboardSpec:
    enabled: bool = spec_field("Run the Streamlit dashboard.", True)
    host: str | None = spec_field(
        "Ingress host name; no Ingress when absent.", None, pattern=DNS_NAME_PATTERN
    )
    tls_secret: str | None = spec_field(
        "A kubernetes.io/tls Secret in the pipeline's namespace whose certificate the Ingress "
        "serves for the host; plain HTTP when absent.",
        None,
        pattern=DNS_NAME_PATTERN,
    )


@dataclass(frozen=True)
class Retention:
    trades: str = spec_field(
        "How long Kafka keeps the trades topic (12h, 7d or forever): what a stopped aggregator "
        "can catch up on; candles on HDFS are the durable record.",
        "7d",
        pattern=RETENTION_PATTERN,
    )
    candles: str = spec_field(
        "How long Kafka keeps each candles topic (12h, 7d or forever); the predictor rebuilds "
        "its history from the model interval's topic after a restart.",
        FOREVER,
        pattern=RETENTION_PATTERN,
    )
    forecasts: str = spec_field(
        "How long Kafka keeps the forecasts topic (12h, 7d or forever).",
        FOREVER,
        pattern=RETENTION_PATTERN,
    )
    model_versions: int = spec_field(
        "Trained versions the model registry keeps: the newest N, and the serving one always.",
        5,
        minimum=1,
        maximum=1000,
    )


@dataclass(frozen=True)
class ComponentResources:
    cpu: str = spec_field("CPU request, for example 250m.", "250m", pattern=QUANTITY_PATTERN)
    memory: str = spec_field(
        "Memory request and limit, for example 512Mi.", "512Mi", pattern=QUANTITY_PATTERN
    )


@dataclass(frozen=True)
class Resources:
    producer: ComponentResources = spec_field("Producer.", ComponentResources("100m", "256Mi"))
    aggregator: ComponentResources = spec_field("Spark driver.", ComponentResources("500m", "1Gi"))
    trainer: ComponentResources = spec_field("Training job.", ComponentResources("1", "2Gi"))
    predictor: ComponentResources = spec_field("Predictor.", ComponentResources("100m", "512Mi"))
    dashboard: ComponentResources = spec_field("Dashboard.", ComponentResources("100m", "256Mi"))


@dataclass(frozen=True)
class CryptoPipelineSpec:
    symbol: str = spec_field(
        "Binance symbol in upper case, for example BTCUSDT.", pattern=SYMBOL_PATTERN.pattern
    )
    source: Source = spec_field("Where trades come from.", Source())
    intervals: list[str] = spec_field(
        "Candle intervals to aggregate, each unique.",
        ["1m", "5m", "1h"],
        item_pattern=INTERVAL_PATTERN.pattern,
        min_items=1,
    )
    watermark: str = spec_field(
        "How late a trade may arrive and still count.", "30s", pattern=DURATION_PATTERN
    )
    sinks: Sinks = spec_field("Where candles go.", Sinks())
    retention: Retention = spec_field(
        "How long Kafka keeps each kind of topic, and how many model versions stay.", Retention()
    )
    model: ModelSpec = spec_field("Forecasting model.", ModelSpec())
    dashboard: DashboardSpec = spec_field("Dashboard.", DashboardSpec())
    resources: Resources = spec_field("Resource requests per component.", Resources())
    suspend: bool = spec_field("Scale every part to zero, keeping data and models.", False)
    pool: str = spec_field(
        "The pool whose producer and aggregator serve this pipeline (with isolation: shared); "
        "the pipelines of one pool and namespace share them, and their sinks and source kind.",
        "default",
        pattern=POOL_PATTERN,
    )
    isolation: Isolation = spec_field(
        "shared: the pool's producer and aggregator serve this pipeline; dedicated: its own.",
        Isolation.DEDICATED,
    )


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


T = TypeVar("T")


def optional_inner(annotation: Any) -> tuple[Any, bool]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return args[0], True
    return annotation, False


_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _scalar(
    value: Any, kind: type, path: str, rules: Mapping[str, Any], problems: list[str]
) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        allowed = [member.value for member in kind]
        if value not in allowed:
            problems.append(f"{path}: must be one of {', '.join(allowed)}, not {value!r}")
            return None
        return kind(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        problems.append(f"{path}: must be {_TYPE_WORDS.get(kind, kind.__name__)}, not {value!r}")
        return None
    if isinstance(value, str) and len(value) > MAX_STRING:
        problems.append(f"{path}: is longer than {MAX_STRING} characters")
        return None
    if "pattern" in rules and not re.match(rules["pattern"], str(value)):
        problems.append(f"{path}: {value!r} does not look right ({rules['doc'].rstrip('.')})")
    if "minimum" in rules and value < rules["minimum"]:
        problems.append(f"{path}: must be at least {rules['minimum']}, not {value}")
    if "maximum" in rules and value > rules["maximum"]:
        problems.append(f"{path}: must be at most {rules['maximum']}, not {value}")
    return value


def _nested_default(spec: dataclasses.Field[Any], defaults: Any) -> Any:
    """What a nested object's absent fields default to: the enclosing default object's value."""
    if defaults is not None:
        return getattr(defaults, spec.name)
    return None if spec.default is dataclasses.MISSING else spec.default


def _build(
    cls: type[T], data: Any, path: str, problems: list[str], defaults: T | None = None
) -> T | None:
    """`cls` from a mapping. Absent fields take their value in `defaults` (the field's default
    object) when there is one, so that `resources.trainer` given in part keeps the trainer's
    defaults, not ComponentResources', for the rest: defaults apply field by field."""
    if not isinstance(data, Mapping):
        problems.append(f"{path or 'spec'}: must be an object, not {data!r}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {camel(f.name): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    for key in unknown:
        problems.append(
            f"{path}{'.' if path else ''}{key}: unknown field (known: {', '.join(fields)})"
        )
    values: dict[str, Any] = {}
    for key, spec in fields.items():
        where = f"{path}{'.' if path else ''}{key}"
        if key not in data:
            if defaults is not None:
                values[spec.name] = getattr(defaults, spec.name)
            elif (
                spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            ):
                problems.append(f"{where}: is required ({spec.metadata['doc'].rstrip('.')})")
            continue
        values[spec.name] = _value(
            hints[spec.name],
            data[key],
            where,
            spec.metadata,
            problems,
            _nested_default(spec, defaults),
        )
    if problems:
        return None
    return cls(**values)


def _value(
    annotation: Any,
    value: Any,
    path: str,
    rules: Mapping[str, Any],
    problems: list[str],
    default: Any = None,
) -> Any:
    kind, optional = optional_inner(annotation)
    if value is None:
        if not optional:
            problems.append(f"{path}: must not be null")
        return None
    if dataclasses.is_dataclass(kind):
        nested: list[str] = []
        defaults = default if isinstance(default, kind) else None  # type: ignore[arg-type]
        built = _build(kind, value, path, nested, defaults)  # type: ignore[arg-type]
        problems.extend(nested)
        return built
    if typing.get_origin(kind) is list:
        if not isinstance(value, list):
            problems.append(f"{path}: must be a list, not {value!r}")
            return None
        if len(value) < rules.get("min_items", 0):
            problems.append(f"{path}: needs at least {rules['min_items']} item(s)")
        if len(value) > MAX_ITEMS:
            problems.append(f"{path}: has more than {MAX_ITEMS} items")
        item_rules = {"doc": rules["doc"]}
        if "item_pattern" in rules:
            item_rules["pattern"] = rules["item_pattern"]
        item_type = typing.get_args(kind)[0]
        return [
            _scalar(item, item_type, f"{path}[{index}]", item_rules, problems)
            for index, item in enumerate(value)
        ]
    return _scalar(value, kind, path, rules, problems)


def _cross_field_problems(spec: CryptoPipelineSpec) -> list[str]:
    problems = []
    duplicates = sorted({i for i in spec.intervals if spec.intervals.count(i) > 1})
    if duplicates:
        problems.append(
            f"intervals: each interval may appear once; repeated: {', '.join(duplicates)}"
        )
    if spec.model.interval not in spec.intervals:
        problems.append(
            f"model.interval: {spec.model.interval} is not aggregated; add it to intervals "
            f"({', '.join(spec.intervals)})"
        )
    if spec.model.horizon >= spec.model.lookback:
        problems.append(
            f"model.horizon: {spec.model.horizon} must be smaller than model.lookback "
            f"({spec.model.lookback}): the model cannot see less than it forecasts"
        )
    candles_retention = parse_retention(spec.retention.candles)
    needed = (spec.model.lookback + spec.model.horizon) * parse_interval(spec.model.interval)
    if candles_retention != -1 and candles_retention < needed:
        problems.append(
            f"retention.candles: {spec.retention.candles} keeps fewer than lookback + horizon "
            f"({spec.model.lookback + spec.model.horizon}) candles of {spec.model.interval}, "
            "which the predictor reads back after a restart; keep them longer or forever"
        )
    sheets = spec.sinks.sheets
    if sheets.enabled and (sheets.secret_ref is None or not sheets.spreadsheet_id):
        problems.append(
            "sinks.sheets: an enabled Sheets sink needs spreadsheetId and secretRef "
            "(a Secret with the service account's JSON key)"
        )
    return problems


def parse_spec(data: Mapping[str, Any]) -> CryptoPipelineSpec:
    """Validate a CryptoPipeline's spec; raise SpecError listing every problem."""
    problems: list[str] = []
    spec = _build(CryptoPipelineSpec, data, "", problems)
    if spec is None:
        raise SpecError(problems)
    problems = _cross_field_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec


def to_mapping(spec: Any) -> Any:
    """The camelCase mapping of a spec object (what `parse_spec` reads back)."""
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return {camel(f.name): to_mapping(getattr(spec, f.name)) for f in dataclasses.fields(spec)}
    if isinstance(spec, list):
        return [to_mapping(item) for item in spec]
    if isinstance(spec, StrEnum):
        return spec.value
    return spec


API_GROUP = "cryptopipe.io"
API_VERSION = "v1alpha1"
KIND = "CryptoPipeline"


def spec_from_document(document: Any) -> CryptoPipelineSpec:
    """A CryptoPipeline manifest (apiVersion, kind, spec) or a bare spec mapping."""
    if not isinstance(document, Mapping):
        raise SpecError([f"spec: a document must be a mapping, not {type(document).__name__}"])
    if "kind" in document:
        if document["kind"] != KIND or document.get("apiVersion") != f"{API_GROUP}/{API_VERSION}":
            raise SpecError(
                [
                    f"kind: expected {KIND} in {API_GROUP}/{API_VERSION}, "
                    f"not {document.get('kind')} in {document.get('apiVersion')}"
                ]
            )
        return parse_spec(document.get("spec") or {})
    return parse_spec(document)


def load_spec_file(path: str) -> CryptoPipelineSpec:
    """Read a spec from a YAML or JSON file (what the operator renders into a ConfigMap)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        try:
            document = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise SpecError([f"{path}: not YAML or JSON: {error}"]) from error
    try:
        return spec_from_document(document)
    except SpecError as error:
        raise SpecError([f"{path}: {problem}" for problem in error.problems]) from error
