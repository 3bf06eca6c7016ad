"""Kafka transactions around the producer's sends: fencing, and restarts that resume exactly.

Two producers of the same trades can overlap: a Deployment's replacement pod starts while the
deleted one is still terminating, and both resume from the same last trade. With one
transactional id per set of trades topics, the newer producer's `init_transactions` fences the
older one: the broker aborts its open transaction and refuses everything it sends afterwards.
Readers use `read_committed`, so aborted records are never seen, and a restart resumes after the
last committed trade.

Sends are grouped into one transaction per `commit_interval` seconds, committed from a timer
thread, so a quiet stream still becomes visible within that interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import InvalidProducerEpochError, KafkaError, ProducerFencedError

log = logging.getLogger(__name__)

DEFAULT_COMMIT_INTERVAL = 0.5


class DeliveryError(RuntimeError):
    """Kafka refused a record or a commit: stop, and resume after the last commit on restart."""


class FencedError(DeliveryError):
    """A newer producer with the same transactional id took over."""


def transactional_id(source: str, symbols: Iterable[str]) -> str:
    """One id per source and set of symbols: the topics one producer owns."""
    return f"cryptopipe-producer.{source}.{'.'.join(sorted(s.lower() for s in symbols))}"


def describe(error: BaseException, transactional: str) -> DeliveryError:
    # A fenced producer's commit is refused with ProducerFenced, its sends with InvalidEpoch.
    if isinstance(error, ProducerFencedError | InvalidProducerEpochError):
        return FencedError(
            f"another producer took over transactional id {transactional!r} (fenced): this one "
            "stops so that only the newer one publishes; its open transaction was aborted"
        )
    return DeliveryError(f"Kafka refused a record or a commit: {error}")


class TransactionalProducer:
    """Sends inside Kafka transactions, committed every `commit_interval` seconds.

    Any failure is fatal: the open transaction is never committed, so what was sent since the
    last commit is invisible to read_committed readers and is sent again after a restart.
    """

    def __init__(
        self,
        producer: KafkaProducer,
        commit_interval: float = DEFAULT_COMMIT_INTERVAL,
    ) -> None:
        self._producer = producer
        self._id = str(producer.config["transactional_id"])
        self._interval = commit_interval
        self._lock = threading.Lock()
        self._open = False
        self._failure: DeliveryError | None = None
        self._closed = threading.Event()
        self._committer: threading.Thread | None = None

    @property
    def failure(self) -> DeliveryError | None:
        return self._failure

    def start(self) -> None:
        """Fence any older producer with this id (its open transaction is aborted), then start
        the commit timer. Call before reading where to resume from."""
        try:
            self._producer.init_transactions()
        except KafkaError as error:
            raise self._fail(error) from error
        self._committer = threading.Thread(
            target=self._commit_loop, name="kafka-commit", daemon=True
        )
        self._committer.start()

    def send(self, topic: str, key: bytes | None, value: bytes) -> Any:
        with self._lock:
            self.check()
            try:
                if not self._open:
                    self._producer.begin_transaction()
                    self._open = True
                future = self._producer.send(topic, key=key, value=value)
            except KafkaError as error:
                raise self._fail(error) from error
        # A refused record dooms its transaction: it is never committed (nor anything after it).
        future.add_errback(self._fail)
        return future

    def check(self) -> None:
        if self._failure is not None:
            raise self._failure

    def commit(self) -> None:
        """Commit what was sent so far (waits for every record's acknowledgement)."""
        with self._lock:
            self.check()
            if not self._open:
                return
            try:
                self._producer.commit_transaction()
            except KafkaError as error:
                raise self._fail(error) from error
            self._open = False

    def flush(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout=timeout)
        self.commit()

    def close(self, timeout: float = 30.0) -> None:
        """Commit the last transaction (unless failed) and close the producer."""
        self._closed.set()
        if self._committer is not None:
            self._committer.join(timeout)
        if self._failure is None:
            try:
                self.flush(timeout)
            finally:
                self._producer.close(timeout=timeout)
            return
        # Nothing more of a failed producer may be committed: drop what it still holds.
        try:
            self._producer.close(timeout=0)
        except KafkaError as error:
            log.debug("closing a failed producer: %s", error)

    def _commit_loop(self) -> None:
        while not self._closed.wait(self._interval):
            try:
                self.commit()
            except DeliveryError:
                return

    def _fail(self, error: BaseException) -> DeliveryError:
        if self._failure is None:
            self._failure = describe(error, self._id)
            log.error("%s", self._failure)
        return self._failure
