"""The outbox as a stream: claim as slots free up, record outcomes as they arrive.

``Dispatcher.run_once`` claims a batch and waits for its slowest vendor call before recording
any of it, so an action claimed with a fast batch still waits for the slow one, and nothing
new starts meanwhile. The daemon runs this instead: up to ``concurrency`` actions are in
flight at any moment; the claimer tops them up whenever a quarter of the slots are free (or
the stream is empty), and the recorder commits every outcome that has arrived in one
transaction, then frees their slots. Per-person order holds as in ``run_once``: a claim
never takes an action while an earlier one of the same person is pending or running, and an
outcome is committed before its slot (and so that person's next action) is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from engine.outbox import Dispatcher, _Write
from engine.store.queries import Claimed

log = logging.getLogger("nurture.outbox")
LEASE_SWEEP_EVERY = timedelta(seconds=5)


class Stream:
    def __init__(self, dispatcher: Callable[[], Dispatcher], idle: float = 0.5) -> None:
        self.dispatcher = dispatcher  # asked for on every claim: a reload swaps it
        self.idle = idle
        self._done: asyncio.Queue[tuple[Dispatcher, _Write] | None] = asyncio.Queue()
        self._running: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._swept_at: datetime | None = None
        self._leases: dict[int, datetime] = {}  # action id -> until when our claim holds

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Until ``stop``: then the actions in flight finish and are recorded, and nothing new
        is claimed. Cancelled, it hands back whatever it had claimed (see ``release``)."""
        recorder = asyncio.create_task(self._record_forever())
        try:
            await self._claim_forever(stop, wake)
            while self._running:  # stop: finish what is in flight
                await asyncio.wait(set(self._running))
            self._done.put_nowait(None)  # then record every outcome, and end
            await recorder
        except asyncio.CancelledError:
            for task in self._running:
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            await asyncio.shield(self._drain_then_release())
            raise
        finally:
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)

    async def _claim_forever(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        while not stop.is_set():
            dispatcher = self.dispatcher()
            free = dispatcher.concurrency - len(self._running)
            if free >= max(1, dispatcher.concurrency // 4) or not self._running:
                wake.clear()  # before claiming: a wake during the claim is not lost
                self._slot_freed.clear()
                try:
                    claimed = await self._claim(dispatcher, free)
                except Exception as exc:  # the store went away: keep the stream alive
                    log.warning(json.dumps({"decision": "claim_failed", "error": str(exc)}))
                    claimed = []
                for job in claimed:
                    self._start(dispatcher, job)
                if claimed:
                    continue
            else:
                self._slot_freed.clear()
            await self._sleep(wake)

    async def _sleep(self, wake: asyncio.Event) -> None:
        """Until new work may be claimable: a wake (an event was accepted), a slot freed (a
        person's next action may be unblocked) or ``idle`` (retries and steps come due)."""
        waiters = {
            asyncio.ensure_future(wake.wait()),
            asyncio.ensure_future(self._slot_freed.wait()),
        }
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED), self.idle
                )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _claim(self, dispatcher: Dispatcher, limit: int) -> list[Claimed]:
        now = dispatcher.clock.now()
        sweep = self._swept_at is None or now - self._swept_at >= LEASE_SWEEP_EVERY
        claimed, lease_until = await dispatcher.claim(limit, sweep=sweep)
        if sweep:
            self._swept_at = now
        self._leases.update((job.id, lease_until) for job in claimed)
        return claimed

    def _start(self, dispatcher: Dispatcher, job: Claimed) -> None:
        async def run() -> None:
            self._done.put_nowait((dispatcher, await dispatcher._run(job)))

        task = asyncio.get_running_loop().create_task(run())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _record_forever(self) -> None:
        while True:
            ready = [await self._done.get(), *self._take_ready()]
            outcomes = [item for item in ready if item is not None]
            if outcomes:
                await self._record(outcomes)
            if len(outcomes) < len(ready):  # the end-of-stream mark
                return

    def _take_ready(self) -> list[tuple[Dispatcher, _Write] | None]:
        ready = []
        while not self._done.empty():
            ready.append(self._done.get_nowait())
        return ready

    async def _record(self, outcomes: list[tuple[Dispatcher, _Write]]) -> None:
        by_dispatcher: dict[int, tuple[Dispatcher, list[_Write]]] = {}
        for dispatcher, write in outcomes:
            by_dispatcher.setdefault(id(dispatcher), (dispatcher, []))[1].append(write)
        for dispatcher, writes in by_dispatcher.values():
            lease_until = min(self._leases.get(w.job.id, dispatcher.clock.now()) for w in writes)
            try:  # the store away: retried while the lease holds, then given up to the lease
                await dispatcher._record_within_lease(writes, lease_until)
            except Exception as exc:  # not recorded: the lease expires and they run again
                log.warning(json.dumps({"decision": "record_failed", "error": str(exc)}))
            dispatcher.in_flight.difference_update(w.job.id for w in writes)
            for write in writes:
                self._leases.pop(write.job.id, None)
        self._slot_freed.set()

    async def _drain(self) -> None:
        """Record what has finished but is not recorded yet."""
        ready = [item for item in self._take_ready() if item is not None]
        if ready:
            await self._record(ready)

    async def _drain_then_release(self) -> None:
        await self._drain()
        await self.dispatcher().release_in_flight()
