"""Snapshots of the state in a JetStream object store (`TITAN_EXEC_SNAPSHOTS`).

An object store, not a KV bucket: a KV value must fit in one message, and a state of
tens of thousands of orders is megabytes. nats-py writes an object as chunks and its
metadata last (a rollup), so a reader never sees half an object, and it checks the
object's SHA-256 on read; `core.snapshot.restore` checks the state hash on top.

Objects are named ``<ns>.<shard>.<watermark seq, 16 digits>``, so the names sort by
position; the newest usable one is the highest watermark that reads back whole. The store
has no TTL: after a quiet week the only snapshot must still be there. Old objects are
deleted by the writer (`prune`), keeping the newest `keep`.

Every nats-py error of this store is turned into `SnapshotStoreError` here, in one place.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.js.object_store import (
    OBJ_ALL_META_PRE_TEMPLATE,
    OBJ_META_PRE_TEMPLATE,
    OBJ_STREAM_TEMPLATE,
    ObjectStore,
)

log = logging.getLogger(__name__)

BUCKET = "TITAN_EXEC_SNAPSHOTS"


class SnapshotStoreError(RuntimeError):
    """The snapshot store could not be read or written (names the object and the cause)."""


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    name: str
    watermark_seq: int


def object_name(ns: str, shard: str, watermark_seq: int) -> str:
    return f"{ns}.{shard}.{watermark_seq:016d}"


def _watermark(name: str, prefix: str) -> int | None:
    if not name.startswith(prefix):
        return None
    tail = name[len(prefix) :]
    return int(tail) if tail.isdigit() else None


class SnapshotStore:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        ns: str,
        shard: str,
        bucket: str = BUCKET,
        read_timeout_s: float = 30.0,
    ):
        self._js = js
        self.read_timeout_s = read_timeout_s
        self._stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
        self.ns = ns
        self.shard = shard
        self.bucket = bucket
        self._store: ObjectStore | None = None
        self._prefix = f"{ns}.{shard}."

    async def ensure(self, *, replicas: int = 1, max_bytes: int = -1) -> None:
        """Create the bucket if it is missing (idempotent)."""
        try:
            self._store = await self._js.create_object_store(
                self.bucket,
                ObjectStoreConfig(
                    description="titan-execution state snapshots (ha-protocol.md §8)",
                    storage=StorageType.FILE,
                    replicas=replicas,
                    max_bytes=max_bytes,
                ),
            )
        except Exception as err:
            raise SnapshotStoreError(f"cannot create object store {self.bucket}: {err!r}") from err

    async def _open(self) -> ObjectStore | None:
        if self._store is None:
            try:
                self._store = await self._js.object_store(self.bucket)
            except BucketNotFoundError:
                return None
            except Exception as err:
                raise SnapshotStoreError(
                    f"cannot open object store {self.bucket}: {err!r}"
                ) from err
        return self._store

    async def put(self, watermark_seq: int, data: bytes, headers: dict[str, str]) -> str:
        store = await self._open()
        if store is None:
            raise SnapshotStoreError(f"object store {self.bucket} does not exist")
        name = object_name(self.ns, self.shard, watermark_seq)
        try:
            await store.put(name, data, meta=ObjectMeta(name=name, headers=headers))
        except Exception as err:
            raise SnapshotStoreError(f"cannot write snapshot {name}: {err!r}") from err
        return name

    async def newest_first(self) -> list[StoredSnapshot]:
        """This namespace and shard's snapshots, newest (highest watermark) first.

        Read from the store stream's subject list (one API request, bounded by a timeout),
        not with nats-py's `list()`: that one waits without a bound for a watcher that a
        concurrent delete can leave with nothing to deliver (read in its source: its
        end-of-listing marker only comes with a delivered message).
        A name is listed while its metadata subject holds a message; `delete` purges it,
        so a listed name that turns out deleted (a stop between the two) fails `get`."""
        if await self._open() is None:
            return []
        meta = OBJ_ALL_META_PRE_TEMPLATE.format(bucket=self.bucket)
        try:
            info = await self._js.stream_info(self._stream, subjects_filter=meta)
        except Exception as err:
            raise SnapshotStoreError(f"cannot list {self.bucket}: {err!r}") from err
        found = []
        for subject in info.state.subjects or {}:
            try:
                name = base64.urlsafe_b64decode(subject.rsplit(".", 1)[-1]).decode()
            except (ValueError, UnicodeDecodeError):
                continue  # not an object name of ours
            seq = _watermark(name, self._prefix)
            if seq is not None:
                found.append(StoredSnapshot(name, seq))
        return sorted(found, key=lambda s: s.watermark_seq, reverse=True)

    async def get(self, name: str) -> bytes:
        """The object's bytes (nats-py checks their SHA-256). Bounded in time: nats-py
        reads the chunks with a consumer that waits for ever when they are purged under
        it (the writer pruned the object meanwhile)."""
        store = await self._open()
        if store is None:
            raise SnapshotStoreError(f"object store {self.bucket} does not exist")
        buf = io.BytesIO()
        try:
            async with asyncio.timeout(self.read_timeout_s):
                await store.get(name, writeinto=buf)
        except ObjectNotFoundError as err:
            raise SnapshotStoreError(f"snapshot {name} not found") from err
        except TimeoutError as err:
            raise SnapshotStoreError(
                f"snapshot {name} not read within {self.read_timeout_s} s (deleted meanwhile?)"
            ) from err
        except Exception as err:
            raise SnapshotStoreError(f"cannot read snapshot {name}: {err!r}") from err
        return buf.getvalue()

    async def delete(self, name: str) -> None:
        """Delete an object and its deletion marker: nats-py leaves a marker per deleted
        object that every listing reads, which would make a start slower with every
        snapshot ever written (measured: 45 µs each, 140 ms after 3000). Names are never
        reused (each is a watermark), so the marker is not needed."""
        store = await self._open()
        if store is None:
            return
        try:
            await store.delete(name)
        except ObjectNotFoundError:
            pass
        except Exception as err:
            raise SnapshotStoreError(f"cannot delete snapshot {name}: {err!r}") from err
        meta = OBJ_META_PRE_TEMPLATE.format(
            bucket=self.bucket, obj=base64.urlsafe_b64encode(name.encode()).decode()
        )
        try:
            await self._js.purge_stream(
                OBJ_STREAM_TEMPLATE.format(bucket=self.bucket), subject=meta
            )
        except Exception as err:
            raise SnapshotStoreError(f"cannot purge the marker of {name}: {err!r}") from err

    async def prune(
        self, keep: int, listed: list[StoredSnapshot] | None = None
    ) -> list[StoredSnapshot]:
        """Delete all but the newest `keep` (of `listed`, newest first, when the caller has
        just listed them); returns the ones kept."""
        snapshots = await self.newest_first() if listed is None else listed
        for old in snapshots[keep:]:
            await self.delete(old.name)
        return snapshots[:keep]
