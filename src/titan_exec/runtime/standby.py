"""One stretch of hot standby (ha-protocol.md §5): from a load (or a rebuild) until the
takeover's drain or the next rebuild.

It folds each new event of the namespace as it lands (`EventFollower`, the same `step` the
active uses), hands the checkpoint markers and truth events to the drift monitor in stream
order, and reads `TITAN_CMD` through this instance's durable consumer (`CommandShadow`),
acknowledging each command once the active's decision for it is folded. It never writes
to the venue or to the event stream.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from nats.js import JetStreamContext

from titan_exec.adapters.nats.fence import last_subject_seq
from titan_exec.adapters.nats.follow import EventFollower
from titan_exec.config import Config
from titan_exec.core.state import State
from titan_exec.runtime.drift import DriftMonitor
from titan_exec.runtime.shadow import CommandShadow, bind_command_consumer
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)


class Standby:
    def __init__(
        self,
        js: JetStreamContext,
        cfg: Config,
        state: State,
        *,
        after_seq: int,
        drift: DriftMonitor,
        command_sub: Any,
    ) -> None:
        self._js = js
        self._cfg = cfg
        self._drift = drift
        subjects = Subjects(cfg.service.namespace)
        self._checkpoint_subject = subjects.checkpoint(cfg.service.shard)
        self._truth_subject = subjects.truth
        self._epoch_subject = subjects.epoch(cfg.service.shard)
        self.follower = EventFollower(
            js,
            state,
            ns=cfg.service.namespace,
            after_seq=after_seq,
            on_other=self._on_other,
        )
        self.shadow = CommandShadow(
            lambda is_stopping: bind_command_consumer(js, cfg, is_stopping),
            lambda: self.follower.state,
            fetch_batch=cfg.consumer.fetch_batch,
            psub=command_sub,
        )

    async def start(self) -> None:
        self._drift.reset()
        with contextlib.suppress(Exception):  # display only: the follower updates it
            self.follower.newest_epoch = await last_subject_seq(
                self._js, "TITAN_EVT", self._epoch_subject
            )
        await self.follower.start()
        self.shadow.start()

    async def stop(self) -> Any:
        """Stop following and reading commands: the held commands go back to the consumer
        (redelivered at once); returns the pull subscription, which goes on with the next
        reader of this instance (no delivery falls between two readers)."""
        psub = await self.shadow.stop(hand_over=True)
        await self.follower.stop()
        return psub

    def _on_other(self, subject: str, data: bytes, seq: int) -> None:
        if subject == self._checkpoint_subject:
            self._drift.on_checkpoint(seq)
        elif subject == self._truth_subject:
            self._drift.on_truth(data)

    async def is_caught_up(self) -> bool:
        return await self.follower.is_at_head()

    @property
    def last_seq(self) -> int:
        return self.follower.last_seq

    @property
    def lag(self) -> int:
        return self.follower.lag

    @property
    def waiting(self) -> int:
        return self.shadow.waiting

    @property
    def newest_epoch(self) -> int:
        return self.follower.newest_epoch
