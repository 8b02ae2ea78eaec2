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

import base64
import io
import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import OBJ_META_PRE_TEMPLATE, OBJ_STREAM_TEMPLATE, ObjectStore

log = logging.getLogger(__name__)

BUCKET = "TITAN_EXEC_SNAPSHOTS"


class SnapshotStoreError(RuntimeError):
    """The snapshot store could not be read or written (names the object and the cause)."""


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    name: str
    watermark_seq: int
    size: int


def object_name(ns: str, shard: str, watermark_seq: int) -> str:
    return f"{ns}.{shard}.{watermark_seq:016d}"


def _watermark(name: str, prefix: str) -> int | None:
    if not name.startswith(prefix):
        return None
    tail = name[len(prefix) :]
    return int(tail) if tail.isdigit() else None


class SnapshotStore:
    def __init__(self, js: JetStreamContext, *, ns: str, shard: str, bucket: str = BUCKET):
        self._js = js
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
        """This namespace and shard's snapshots, newest (highest watermark) first."""
        store = await self._open()
        if store is None:
            return []
        try:
            infos = await store.list(ignore_deletes=True)
        except NotFoundError:
            return []  # an empty bucket
        except Exception as err:
            raise SnapshotStoreError(f"cannot list {self.bucket}: {err!r}") from err
        found = []
        for info in infos:
            seq = _watermark(info.name or "", self._prefix)
            if seq is not None and not info.deleted:
                found.append(StoredSnapshot(str(info.name), seq, int(info.size or 0)))
        return sorted(found, key=lambda s: s.watermark_seq, reverse=True)

    async def get(self, name: str) -> bytes:
        store = await self._open()
        if store is None:
            raise SnapshotStoreError(f"object store {self.bucket} does not exist")
        buf = io.BytesIO()
        try:
            await store.get(name, writeinto=buf)
        except ObjectNotFoundError as err:
            raise SnapshotStoreError(f"snapshot {name} not found") from err
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

    async def prune(self, keep: int) -> list[StoredSnapshot]:
        """Delete all but the newest `keep`; returns the ones kept (newest first)."""
        snapshots = await self.newest_first()
        for old in snapshots[keep:]:
            await self.delete(old.name)
        return snapshots[:keep]
