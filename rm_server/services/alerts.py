"""The alert dispatcher: events become digests per channel and kind, sent off the loop.

Alertmanager's grouping: the first event of a kind waits `group_wait` for its fellows; once a
digest of that kind went out, the next waits until the channel's `min_interval_s` has passed
(group_interval). A storm of 500 failed backups is one message per channel, naming the
hosts (the first MAX_LISTED) and counting them all. A send that fails keeps its digest (later
events join it) and is retried with backoff; the channel's last error is stored for the API
and the console. Sends run in a small thread pool, each bounded by a timeout, so neither a
slow service nor Apprise's blocking I/O ever holds the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rm_core.alerts import MAX_LISTED, AlertEvent, AlertSubject, digest_text
from rm_core.backoff import Backoff
from rm_core.waiting import wait_event
from rm_server import alert_send
from rm_server.security import MasterKey, SealError
from rm_server.store import Store
from rm_server.store.channels import ChannelRow

log = logging.getLogger("rm_server.alerts")

RECENT = 10_000  # (event, key) pairs remembered so one job's failure is not raised twice


def seal_context(channel_id: str) -> str:
    return f"channel:{channel_id}"


@dataclass
class Group:
    """Occurrences of one event kind waiting for a channel's next digest (bounded: a count,
    the distinct hosts, and the first MAX_LISTED occurrences)."""

    first_at: float
    count: int = 0
    hosts: set[str] = field(default_factory=set)
    listed: list[AlertSubject] = field(default_factory=list)

    def add(self, subject: AlertSubject) -> None:
        self.count += 1
        self.hosts.add(subject.host_id)
        if len(self.listed) < MAX_LISTED:
            self.listed.append(subject)

    def absorb(self, newer: Group) -> None:
        self.count += newer.count
        self.hosts |= newer.hosts
        self.listed = (self.listed + newer.listed)[:MAX_LISTED]


@dataclass(eq=False)
class ChannelState:
    id: str
    name: str
    url_redacted: str
    events: frozenset[AlertEvent]
    min_interval: float
    backoff: Backoff
    groups: dict[AlertEvent, Group] = field(default_factory=dict)
    last_sent: dict[AlertEvent, float] = field(default_factory=dict)
    retry_at: float = 0.0
    updated_at: datetime | None = None  # the stored row's, to see a change made elsewhere
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def due(self, event: AlertEvent, group: Group, group_wait: float) -> float:
        after_last = self.last_sent.get(event, float("-inf")) + self.min_interval
        return max(group.first_at + group_wait, after_last, self.retry_at)

    def next_due(self, group_wait: float) -> float | None:
        return min((self.due(e, g, group_wait) for e, g in self.groups.items()), default=None)

    def put_back(self, event: AlertEvent, group: Group) -> None:
        newer = self.groups.get(event)
        if newer is not None:
            group.absorb(newer)
        self.groups[event] = group


class Alerts:
    def __init__(self, store: Store, master_key: MasterKey, clock: Callable[[], datetime], *,
                 group_wait: float = 30.0, send_timeout: float = 30.0, allow_link_local: bool = False,
                 retry_base: float = 10.0, retry_cap: float = 900.0, workers: int = 4, server_url: Callable[[], str] = str) -> None:
        self.store = store
        self.master_key = master_key
        self.clock = clock
        self.group_wait = group_wait
        self.send_timeout = send_timeout
        self.allow_link_local = allow_link_local
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self.server_url = server_url
        self._channels: dict[str, ChannelState] = {}
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Replicas (app.py): only the leader sends digests, so a storm seen by three replicas is
        # still one message per channel; the others hand their occurrences to it (services/relay.py).
        self.hand_over: Callable[[AlertEvent, AlertSubject, str | None], bool] | None = None
        # Apprise blocks on DNS, HTTP and SMTP: its sends run here, a few at a time.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rm-alerts")

    # ------------------------------------------------------------ channels

    async def load(self) -> None:
        """Follow the stored channels: new and changed ones configured, deleted ones dropped.

        At start, and every few seconds with replicas (app.py): a channel saved through
        another replica reaches this one's events within that time."""
        rows = await self.store.channels.all()
        for row in rows:
            st = self._channels.get(row.id)
            if st is None or st.updated_at != row.updated_at:
                self.configure(row)
        for gone in set(self._channels) - {r.id for r in rows}:
            await self.remove(gone)

    def configure(self, row: ChannelRow) -> None:
        """A channel was created or changed: follow its events; digests of events it no
        longer follows are dropped."""
        st = self._channels.get(row.id)
        if st is None:
            st = self._channels[row.id] = ChannelState(
                row.id, row.name, row.url_redacted, frozenset(), 0.0, Backoff(self.retry_base, self.retry_cap))
            st.task = asyncio.create_task(self._run(st), name=f"alerts:{row.id}")
        st.name, st.url_redacted, st.updated_at = row.name, row.url_redacted, row.updated_at
        st.events = frozenset(AlertEvent(e) for e in row.events)
        st.min_interval = float(row.min_interval_s)
        st.groups = {e: g for e, g in st.groups.items() if e in st.events}
        st.retry_at = 0.0  # a changed URL is tried at once
        st.wake.set()

    async def remove(self, channel_id: str) -> None:
        st = self._channels.pop(channel_id, None)
        if st is not None and st.task is not None:
            st.task.cancel()
            await asyncio.gather(st.task, return_exceptions=True)

    def pending(self, channel_id: str) -> tuple[int, datetime | None]:
        """(events waiting, when the next retry is due) of a channel, for the API."""
        st = self._channels.get(channel_id)
        if st is None:
            return 0, None
        count = sum(g.count for g in st.groups.values())
        left = st.retry_at - asyncio.get_running_loop().time()
        return count, (self.clock() + timedelta(seconds=left) if left > 0 and count else None)

    # ------------------------------------------------------------ events

    def raise_event(self, event: AlertEvent, subject: AlertSubject, key: str | None = None) -> int:
        """Queue one occurrence for every channel that follows `event`; never blocks.

        `key` (a job id, say) makes a repeat of the same occurrence a no-op. Returns how many
        channels took it. The anomaly detector calls this with AlertEvent.backup_anomaly."""
        if self.hand_over is not None and self.hand_over(event, subject, key):
            return 0  # the leading replica takes it
        if key is not None:
            if (event.value, key) in self._recent:
                return 0
            self._recent[(event.value, key)] = None
            if len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        now = asyncio.get_running_loop().time()
        taken = 0
        for st in self._channels.values():
            if event in st.events:
                st.groups.setdefault(event, Group(now)).add(subject)
                st.wake.set()
                taken += 1
        return taken

    # ------------------------------------------------------------ sending

    async def _run(self, st: ChannelState) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            due = st.next_due(self.group_wait)
            if due is None or due > now:
                st.wake.clear()
                await wait_event(st.wake, None if due is None else due - now)  # a cancel always ends the task
                continue
            ready = [(e, g) for e, g in st.groups.items() if st.due(e, g, self.group_wait) <= now]
            for event, _ in ready:
                del st.groups[event]
            for i, (event, group) in enumerate(ready):
                try:
                    error = await self._deliver(st, event, group)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the store or a seal failed: keep the digest, retry later
                    log.exception("notification channel %s: preparing a digest failed", st.name)
                    error = f"internal error: {type(exc).__name__}"
                if error is None:
                    st.last_sent[event] = loop.time()
                    st.backoff.reset()
                    st.retry_at = 0.0
                    continue
                for later_event, later in ready[i:]:
                    st.put_back(later_event, later)
                delay = st.backoff.next()
                st.retry_at = loop.time() + delay
                log.warning("notification channel %s (%s): send failed, next try in %.0f s: %s",
                            st.name, st.url_redacted, delay, error)
                break

    async def _deliver(self, st: ChannelState, event: AlertEvent, group: Group) -> str | None:
        hosts = await self.store.hosts.get_many([s.host_id for s in group.listed])
        listed = [replace(s, hostname=hosts[s.host_id].hostname) if s.host_id in hosts else s for s in group.listed]
        title, body = digest_text(event, group.count, len(group.hosts), listed, self.server_url())
        return await self.send(st.id, title, body)

    async def send(self, channel_id: str, title: str, body: str) -> str | None:
        """One message to the channel now (a digest, or an admin's test); records the outcome.
        None when delivered, else the service's error with the URL's secrets removed."""
        sealed = await self.store.channels.sealed_one(channel_id)
        try:
            url = self.master_key.open(sealed, seal_context(channel_id)).decode()
        except SealError:
            error: str | None = "the channel URL cannot be opened with this server's master key; save the channel again"
        else:
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(self._pool, lambda: alert_send.send(
                url, title, body, timeout=self.send_timeout, allow_link_local=self.allow_link_local))
            try:
                # Apprise bounds its own call; this bounds the wait should a plugin ignore that.
                # Not wait_for: on 3.11 it returns the result of a send that ends in the same
                # turn as remove()'s cancel and drops the cancel; the channel task then waits
                # for a wake that never comes and remove() for it, forever (seen in a test run:
                # deleting a channel right after its digest went out hung the test).
                async with asyncio.timeout(self.send_timeout + 5):
                    error = await work
            except TimeoutError:
                error = f"no answer within {self.send_timeout + 5:.0f} s"
        await self.store.channels.record_send(channel_id, error)
        return error

    def retry_now(self, channel_id: str) -> None:
        """The channel works again (an admin's test went through): waiting digests go now."""
        st = self._channels.get(channel_id)
        if st is not None:
            st.backoff.reset()
            st.retry_at = 0.0
            st.wake.set()

    async def close(self) -> None:
        for st in list(self._channels.values()):
            await self.remove(st.id)
        self._pool.shutdown(wait=False, cancel_futures=True)
