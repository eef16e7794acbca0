"""The simulated agents' jobs that stream logs (log ingest), with the real agent's outbox
rule (docs/protocol.md): every durable event (job.started, each job.log batch, job.finished)
stays pending until the server acks its seq, is resent after every reconnect, whichever
replica that reaches, and the job is listed in the hello's running_jobs until its last
event is acked. A replica killed mid-stream therefore costs no line, and the benches check
exactly that in the database."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from datetime import datetime, timezone

from fleet.stats import mono
from rm_core import protocol as p
from rm_core.ids import new_id

# one job.log line as JSON by one format call, not a dict and json.dumps per line (nothing
# in it needs JSON escaping): seq, ts, then the restic-like text's minute, percent, files
LOG_LINE = ('{{"seq":{},"ts":"{}","stream":"stdout","text":"[0:{:02d}] {:5.2f}%  {} files 123.456 MiB, '
            'total 98765 files 4.567 GiB, 0 errors ETA 0:41"}}')
ACK_WAIT = 120  # s for one ack: a failover (reconnect to another replica) happens inside it


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class JobStream:
    __slots__ = ("host", "total", "upto", "event", "pending", "finished")

    def __init__(self, host: str, total: int) -> None:
        self.host, self.total = host, total  # total: log lines, seqs 2 .. total + 1
        self.upto = 0
        self.event = asyncio.Event()
        self.pending: collections.deque[tuple[int, str]] = collections.deque()  # (last seq, frame)
        self.finished = False  # job.finished acked


class JobStreams:
    """Every streaming job of one swarm. `send(host, frame)` sends on the host's connection
    if it has one that got hello.ok (False otherwise: the frame waits for the resend)."""

    def __init__(self, send: Callable[[str, str], bool], errors: list[str]) -> None:
        self.send, self.errors = send, errors
        self.jobs: dict[str, JobStream] = {}
        self.by_host: dict[str, list[str]] = collections.defaultdict(list)
        self.lines_per_job, self.batch, self.window = 0, 200, 4
        self.hosts: set[str] | None = None  # only jobs of these hosts stream (None: every host)
        self.new_phase()

    def new_phase(self) -> None:
        self.started = self.done = self.lines_acked = 0
        self.first_send: float | None = None
        self.last_ack: float | None = None

    def wants(self, host: str, job_id: str) -> bool:
        return bool(self.lines_per_job) and job_id not in self.jobs and (self.hosts is None or host in self.hosts)

    def running(self, host: str) -> list[str]:
        """The host's jobs for its hello: not finished, or with events not yet acked."""
        return [j for j in self.by_host.get(host, ()) if not self.jobs[j].finished]

    def resend(self, host: str) -> None:
        """After hello.ok (on whichever replica): every unacked event of the host's jobs, in order."""
        for job_id in self.running(host):
            for _, frame in self.jobs[job_id].pending:
                if not self.send(host, frame):
                    return

    def acked(self, job_id: str, upto: int) -> None:
        st = self.jobs.get(job_id)
        if st is None or upto <= st.upto:
            return
        self.lines_acked += max(0, min(upto, st.total + 1) - max(st.upto, 1))
        st.upto = upto
        while st.pending and st.pending[0][0] <= upto:
            st.pending.popleft()
        self.last_ack = mono()
        st.event.set()

    def status(self) -> dict:
        return {"started": self.started, "done": self.done, "lines": self.lines_acked,
                "first_send": self.first_send, "last_ack": self.last_ack}

    def report(self) -> dict[str, list]:
        """Every job streamed so far: [host, log lines, finished and acked]."""
        return {j: [st.host, st.total, st.finished] for j, st in self.jobs.items()}

    def _emit(self, st: JobStream, last_seq: int, frame: str) -> None:
        st.pending.append((last_seq, frame))
        self.send(st.host, frame)

    async def _acked_upto(self, st: JobStream, seq: int) -> None:
        while st.upto < seq:
            st.event.clear()
            await asyncio.wait_for(st.event.wait(), ACK_WAIT)

    async def stream(self, host: str, job_id: str, kind: str) -> None:
        total, batch, window = self.lines_per_job, self.batch, self.window
        st = self.jobs[job_id] = JobStream(host, total)
        self.by_host[host].append(job_id)
        self.started += 1
        if self.first_send is None:
            self.first_send = mono()
        try:
            started = p.JobStarted(job_id=job_id, started_at=datetime.now(timezone.utc), kind=kind)
            self._emit(st, 1, p.encode(p.message(started)))
            seq = 1
            sent = 0
            while sent < total:
                n = min(batch, total - sent)
                ts = now_iso()
                lines = ",".join([LOG_LINE.format(seq + k + 1, ts, (sent + k) % 60, (sent + k) * 100 / total, sent + k)
                                  for k in range(n)])
                seq += n
                sent += n
                await self._acked_upto(st, seq - window * batch)
                self._emit(st, seq, f'{{"type":"job.log","id":"{new_id()}","ref":null,"ts":"{ts}",'
                                    f'"payload":{{"job_id":"{job_id}","lines":[{lines}]}}}}')
            seq += 1
            finished = p.JobFinished(job_id=job_id, seq=seq, state="succeeded", exit_code=0,
                                     finished_at=datetime.now(timezone.utc))
            self._emit(st, seq, p.encode(p.message(finished)))
            await self._acked_upto(st, seq)
            st.finished = True
            self.done += 1
        except Exception as exc:
            self.errors.append(f"log stream {job_id}: {type(exc).__name__} {exc}")
