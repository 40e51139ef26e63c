"""Load an experiment's events into typed, deduplicated DataFrames.

Two sources give the same frames:

* :func:`load_events` reads the experiment's two Redis Streams (DESIGN.md, Events) with
  ``XRANGE ... COUNT`` in batches, from the Redis client or URL it is given: this package
  imports only the bottom layer of ``abtest`` (the event fields), so it never picks a store
  itself. The next batch is requested before the current one is converted, so Redis prepares
  it while Python works; replies are parsed by hiredis into bytes and turned into columns
  batch by batch (no per-event dicts when, as written by ``abtest.events``, every event of a
  batch has the same fields in the same order).
* :func:`load_events_parquet` reads a Parquet export (``abtest export``): one file with a
  ``kind`` column (``exposure`` | ``outcome``) and every field.

Frames
------
exposures
    ``event_id`` (str), ``ts`` (int64 epoch ms), ``time`` (datetime64[ms, UTC]),
    ``experiment_id`` (category), ``unit_id`` (str), ``arm`` (category), ``request_id`` (str),
    ``definition_sha`` (category), ``flow_fingerprint`` (category).
outcomes
    ``event_id``, ``ts``, ``time``, ``experiment_id``, ``unit_id``, ``arm``, ``request_id`` as
    above, ``metric`` (category), ``value`` (float64), ``judge_fingerprint`` (category: the
    evaluator fingerprint of an online judge's ``judge:<evaluator>`` score; empty for other
    outcomes, also those written before the field existed, as ``abtest.event_fields.decode``
    reads them).

Rows keep stream (or file) order. A repeated ``event_id`` keeps its first occurrence only
(writers retry with the same id). Rows that cannot be analysed are dropped: a missing
``unit_id``, ``arm`` or ``ts``, a ``ts`` that is not an integer, and for outcomes a missing
``metric`` or a ``value`` that is not a finite number.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import operator
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from abtest.arm_state import ArmState, AuditEntry, audit_key, parse_audit, parse_states, states_key
from abtest.event_fields import (
    EXPOSURE_FIELDS,
    OPTIONAL_OUTCOME_FIELDS,
    OUTCOME_FIELDS,
    stream_key,
)
from abtest.fingerprints import Manifest, manifests_key, parse_manifests
from abtest.settings import cluster_nodes, is_cluster_url

__all__ = [
    "EXPOSURE_COLUMNS",
    "OUTCOME_COLUMNS",
    "empty_events",
    "load_events",
    "load_arm_states",
    "load_events_parquet",
    "load_manifests",
]

EXPOSURE_COLUMNS: tuple[str, ...] = (*EXPOSURE_FIELDS[:2], "time", *EXPOSURE_FIELDS[2:])
"""Columns of the exposures frame (the fields plus ``time`` after ``ts``)."""

OUTCOME_COLUMNS: tuple[str, ...] = (*OUTCOME_FIELDS[:2], "time", *OUTCOME_FIELDS[2:])
"""Columns of the outcomes frame (the fields plus ``time`` after ``ts``)."""

_CATEGORICAL = frozenset(
    {
        "experiment_id",
        "arm",
        "metric",
        "definition_sha",
        "flow_fingerprint",
        "source",
        "judge_fingerprint",
    }
)
_REQUIRED = {
    "exposure": ("ts", "unit_id", "arm"),
    "outcome": ("ts", "unit_id", "arm", "metric", "value"),
}

DEFAULT_BATCH = 10_000
"""Events per XRANGE call: large enough to amortise round trips, small enough to stream."""


def load_manifests(experiment_id: str, redis: Any) -> dict[str, Manifest]:
    """What each flow fingerprint of the experiment stands for (its arm and prompts, with the
    registry version a label resolved to), by fingerprint; see :mod:`abtest.fingerprints`.

    ``redis`` is what :func:`load_events` takes: a client, a ``RedisCluster`` or a URL.
    """
    with _client(redis) as client:
        return parse_manifests(client.hgetall(manifests_key(experiment_id)))


def load_arm_states(
    experiment_id: str, arms: Sequence[str], redis: Any
) -> tuple[dict[str, ArmState], list[AuditEntry]]:
    """The arms' runtime states (stopped by a safe rollout or an admin, see
    :mod:`abtest.arm_state`) and the audit log of their changes, oldest first."""
    with _client(redis) as client:
        states = parse_states(client.hgetall(states_key(experiment_id)), arms)
        audit = parse_audit(experiment_id, client.xrange(audit_key(experiment_id)))
    return states, audit


@contextlib.contextmanager
def _client(redis: Any) -> Iterator[Any]:
    """A client for small reads: the one given, or one opened on a URL and closed after."""
    if not isinstance(redis, str):
        yield redis
        return
    import redis as redis_py
    from redis.cluster import ClusterNode, RedisCluster

    client: Any = (
        RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster_nodes(redis)])
        if is_cluster_url(redis)
        else redis_py.Redis.from_url(redis)
    )
    try:
        yield client
    finally:
        client.close()


def empty_events() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Empty exposures and outcomes frames with the typed columns of :func:`load_events`."""
    return (
        _typed_frame("exposure", *_Columns(EXPOSURE_FIELDS).arrays()),
        _typed_frame("outcome", *_Columns(OUTCOME_FIELDS).arrays()),
    )


def load_events(
    experiment_id: str,
    redis: Any,
    *,
    batch_size: int = DEFAULT_BATCH,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read an experiment's exposures and outcomes from Redis Streams.

    Parameters
    ----------
    experiment_id : str
        The experiment whose streams ``abtest:{<id>}:exposures`` and ``...:outcomes`` to read.
    redis : redis.Redis or str
        A client (its connection settings are reused on a private connection, so its
        ``decode_responses`` setting does not matter), a ``RedisCluster``, or a
        ``redis://``/``unix://``/``redis+cluster://`` URL. The
        platform's store is ``abtest.store.sync_client()`` (or ``abtest.store.redis_url()``);
        the caller passes it, so that analysis needs none of the service to run.
    batch_size : int, default 10,000
        Events per ``XRANGE`` call.

    Returns
    -------
    (exposures, outcomes) : tuple of pandas.DataFrame
        Typed and deduplicated on ``event_id``; see the module docstring for the columns.
        Missing streams give empty frames.

    Raises
    ------
    ValueError
        If ``batch_size`` is not a positive integer.
    redis.RedisError
        If Redis cannot be reached or a key holds something other than a stream.

    Notes
    -----
    Each stream is read up to its last entry at the time the read reaches the end; events
    appended meanwhile may or may not be included. The outcome stream is read first, so that
    under live traffic no outcome is seen without the exposure that preceded it.

    Python's cyclic garbage collector is paused while replies are parsed (the reply lists are
    acyclic and would otherwise trigger repeated full collections, which more than halves
    throughput); its previous state is restored.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    exposures_key = stream_key(experiment_id, "exposure")
    outcomes_key = stream_key(experiment_id, "outcome")
    with _reader(redis) as read:
        with _gc_paused():
            # Outcomes first: a unit's exposure is written before its outcomes, so every outcome
            # read here has its exposure in the (later) exposure read, even during live traffic.
            outcomes = _typed_frame(
                "outcome", *read(outcomes_key, OUTCOME_FIELDS, batch_size).arrays()
            )
            exposures = _typed_frame(
                "exposure", *read(exposures_key, EXPOSURE_FIELDS, batch_size).arrays()
            )
    return exposures, outcomes


def load_events_parquet(
    path: str | Path, experiment_id: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read exposures and outcomes from a Parquet export.

    Parameters
    ----------
    path : str or Path
        A Parquet file with a ``kind`` column (``exposure`` | ``outcome``) and the event fields
        (``ts`` int64, ``value`` float64, fields an event lacks null).
    experiment_id : str, optional
        Keep only this experiment's events (an export may hold several).

    Returns
    -------
    (exposures, outcomes) : tuple of pandas.DataFrame
        The same columns, types and deduplication as :func:`load_events`.

    Raises
    ------
    ValueError
        If the file has no ``kind`` column.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "kind" not in table.column_names:
        raise ValueError(f"{path}: no 'kind' column; is this an `abtest export` file?")
    if experiment_id is not None and "experiment_id" in table.column_names:
        table = table.filter(pc.equal(_string_column(table, "experiment_id"), experiment_id))
    kinds = _string_column(table, "kind")
    frames = []
    for kind, fields in (("exposure", EXPOSURE_FIELDS), ("outcome", OUTCOME_FIELDS)):
        part = table.filter(pc.fill_null(pc.equal(kinds, kind), False))
        arrays: dict[str, Any] = {}
        for name in fields:
            if name not in part.column_names:
                arrays[name] = (
                    np.full(part.num_rows, np.nan)
                    if name in _NUMERIC
                    else pa.nulls(part.num_rows, pa.string())
                )
            elif name in _NUMERIC:
                column = part.column(name).combine_chunks().cast(pa.float64())
                arrays[name] = column.to_numpy(zero_copy_only=False)
                if name == "ts" and not np.isnan(arrays[name]).any():
                    arrays[name] = part.column(name).combine_chunks().cast(pa.int64()).to_numpy()
            else:
                arrays[name] = _string_column(part, name)
        keep = _first_seen(arrays["event_id"].to_pylist(), set())
        frames.append(_typed_frame(kind, arrays, keep))
    return frames[0], frames[1]


def _string_column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name).combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column.cast(pa.string())


# --- Redis reading ------------------------------------------------------------------------


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def _reader(redis: Any) -> Iterator[Any]:
    """Yield ``read(key, fields, batch_size) -> _Columns`` over a private connection."""
    import redis as redis_py
    from redis.cluster import ClusterNode, RedisCluster

    if isinstance(redis, str) and is_cluster_url(redis):
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in cluster_nodes(redis)],
            decode_responses=False,
            protocol=2,
        )
        try:
            yield lambda key, fields, batch: _read_parsed(cluster, key, fields, batch)
        finally:
            cluster.close()
        return
    if isinstance(redis, str):
        pool = redis_py.ConnectionPool.from_url(
            redis, decode_responses=False, protocol=2, socket_read_size=1 << 20
        )
    elif hasattr(redis, "connection_pool"):
        source = redis.connection_pool
        kwargs = {
            **source.connection_kwargs,
            "decode_responses": False,
            "protocol": 2,
            "socket_read_size": 1 << 20,
        }
        pool = redis_py.ConnectionPool(connection_class=source.connection_class, **kwargs)
    else:  # e.g. RedisCluster: no single pool; use its parsed XRANGE replies
        yield lambda key, fields, batch: _read_parsed(redis, key, fields, batch)
        return
    connection = pool.get_connection()
    try:
        yield lambda key, fields, batch: _read_raw(connection, key, fields, batch)
    finally:
        pool.release(connection)
        pool.disconnect()


def _read_raw(connection: Any, key: str, fields: Sequence[str], batch_size: int) -> _Columns:
    """Read a whole stream, requesting batch k+1 before converting batch k."""
    columns = _Columns(fields)
    connection.send_command("XRANGE", key, "-", "+", "COUNT", batch_size)
    while True:
        batch = connection.read_response()
        more = len(batch) == batch_size
        if more:
            connection.send_command("XRANGE", key, b"(" + batch[-1][0], "+", "COUNT", batch_size)
        columns.add(list(map(_second, batch)))
        del batch
        if not more:
            return columns


def _read_parsed(client: Any, key: str, fields: Sequence[str], batch_size: int) -> _Columns:
    """Read a whole stream through a client's own ``xrange`` (``[(id, {field: value})]``)."""
    columns = _Columns(fields)
    start: Any = "-"
    while True:
        batch = client.xrange(key, start, "+", count=batch_size)
        columns.add([list(itertools.chain.from_iterable(entry[1].items())) for entry in batch])
        if len(batch) < batch_size:
            return columns
        last = batch[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else last)


_second = operator.itemgetter(1)


class _Columns:
    """Typed column chunks, converted batch by batch while the batch is hot in the CPU cache.

    ``add`` takes flat ``[field, value, field, value, ...]`` lists (bytes or str); ``ts`` and
    ``value`` become NumPy chunks, every other field an Arrow string chunk. Event ids go into
    one set as they arrive, which tells whether the (rarer) deduplication pass is needed.
    """

    def __init__(self, fields: Sequence[str]):
        self.fields = tuple(fields)
        self.chunks: dict[str, list[Any]] = {name: [] for name in self.fields}
        self.seen: set[Any] = set()
        self.rows = 0
        self._names = {name.encode(): name for name in self.fields} | {
            name: name for name in self.fields
        }

    def add(self, rows: list[list[Any]]) -> None:
        if not rows:
            return
        values = self._split_uniform(rows) or self._split_mixed(rows)
        self.seen.update(values["event_id"])
        self.rows += len(rows)
        for name, column in values.items():
            self.chunks[name].append(_convert(name, column))

    def _split_uniform(self, rows: list[list[Any]]) -> dict[str, list[Any]] | None:
        """Fast path: every row has the same fields in the same order; slice one flat list."""
        n = len(rows)
        width = len(rows[0])
        flat = list(itertools.chain.from_iterable(rows))
        if len(flat) != n * width or width % 2:
            return None
        names = flat[0:width:2]
        if flat[0::2] != names * n:
            return None
        values: dict[str, list[Any]] = {}
        for j, name in enumerate(names):
            column = self._names.get(name)
            if column is not None and column not in values:
                values[column] = flat[2 * j + 1 :: width]
        for column in self.fields:
            if column not in values:
                values[column] = [None] * n
        return values

    def _split_mixed(self, rows: list[list[Any]]) -> dict[str, list[Any]]:
        dicts = [dict(zip(row[::2], row[1::2], strict=False)) for row in rows]
        return {name: [d.get(name.encode(), d.get(name)) for d in dicts] for name in self.fields}

    def arrays(self) -> tuple[dict[str, Any], np.ndarray]:
        """Concatenated columns and the mask of first occurrences."""
        arrays: dict[str, Any] = {}
        for name in self.fields:
            chunks = self.chunks[name]
            if name in _NUMERIC:
                arrays[name] = np.concatenate(chunks) if chunks else np.empty(0, _NUMERIC[name])
            else:
                arrays[name] = pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())
        self.seen.discard(None)
        if len(self.seen) == self.rows:  # no repeated ids and none missing
            keep = np.ones(self.rows, dtype=bool)
        else:
            keep = _first_seen(arrays["event_id"].to_pylist(), set())
        self.seen = set()
        return arrays, keep


# --- typing -------------------------------------------------------------------------------

_NUMERIC = {"ts": np.int64, "value": np.float64}


def _convert(name: str, values: Sequence[Any]) -> Any:
    if name in _NUMERIC:
        arrow_type = pa.int64() if name == "ts" else pa.float64()
        try:  # Arrow's parser is exact (same doubles as float()) and faster
            return _to_arrow_string(values).cast(arrow_type).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            numbers = _coerce_numbers(values)  # NaN marks a value that is not a number
            if name == "ts":  # a ts must be a whole number of ms; NaN rows are dropped later
                numbers = np.where(numbers == np.round(numbers), numbers, np.nan)
            return numbers
    return _to_arrow_string(values)


def _to_arrow_string(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.binary()).cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        decoded = [
            v.decode("utf-8", "replace")
            if isinstance(v, bytes)
            else (None if v is None else str(v))
            for v in values
        ]
        return pa.array(decoded, pa.string())


def _coerce_numbers(values: Sequence[Any]) -> np.ndarray:
    def number(v: Any) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")

    return np.fromiter(map(number, values), dtype=np.float64, count=len(values))


def _first_seen(event_ids: list[Any], seen: set[Any]) -> np.ndarray:
    """True where an event id was not seen before (in ``seen`` or earlier in this list).

    Missing ids (None) are always kept. Updates ``seen``.
    """
    keep = np.ones(len(event_ids), dtype=bool)
    for i, event_id in enumerate(event_ids):
        if event_id is None:
            continue
        if event_id in seen:
            keep[i] = False
        else:
            seen.add(event_id)
    return keep


def _typed_frame(kind: str, arrays: dict[str, Any], keep: np.ndarray) -> pd.DataFrame:
    """Assemble one kind's frame from converted columns, dropping duplicates and bad rows."""
    fields = EXPOSURE_FIELDS if kind == "exposure" else OUTCOME_FIELDS
    keep = keep.copy()
    ts = arrays["ts"]
    if ts.dtype != np.int64:
        good = np.isfinite(ts) & (np.abs(ts) < 2.0**62)
        keep &= good
        ts = np.where(good, ts, 0).astype(np.int64)
    if kind == "outcome":
        keep &= np.isfinite(arrays["value"])
    for name in _REQUIRED[kind]:
        if name not in _NUMERIC:
            keep &= ~arrays[name].is_null().to_numpy(zero_copy_only=False)
    if not keep.all():
        mask = pa.array(keep)
        arrays = {
            name: (array[keep] if name in _NUMERIC else array.filter(mask))
            for name, array in arrays.items()
        }
        ts = ts[keep]

    data: dict[str, Any] = {}
    for name in fields:
        if name == "ts":
            data["ts"] = ts
            data["time"] = pd.Series(ts.astype("datetime64[ms]")).dt.tz_localize("UTC")
        elif name == "value":
            data["value"] = arrays["value"]
        elif name in _CATEGORICAL:
            data[name] = _categorical(_with_default(kind, name, arrays[name]))
        else:
            data[name] = arrays[name].to_pandas()
    return pd.DataFrame(data)


def _with_default(kind: str, name: str, array: pa.Array) -> pa.Array:
    """An optional outcome field with its default where the entry lacks it (older writers)."""
    default = OPTIONAL_OUTCOME_FIELDS.get(name) if kind == "outcome" else None
    return array if default is None else array.fill_null(default)


def _categorical(array: pa.Array) -> pd.Categorical:
    encoded = array.dictionary_encode()
    categories = pd.Index(encoded.dictionary.to_pandas(), dtype="str")
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return pd.Categorical.from_codes(codes.astype(np.int32), categories=categories)
