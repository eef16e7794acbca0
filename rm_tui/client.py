"""The rm-server REST + events API as typed async calls. Knows nothing of widgets."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from pydantic import BaseModel, ValidationError

from rm_core.api import (AuditEntry, EnrollmentToken, EnrollmentTokenCreated, ErrorBody, Host, LoginResponse, Maintenance,
                         Operator, RepoInfo, Schedule, ScheduleList, Snapshot, SourceGroup)
from rm_core.fingerprints import normalise_fingerprint
from rm_core.jobs import Job, JobLogPage

TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
HOSTS_PAGE = 5000
# A dropped events stream (the app's, a job log's) is retried with rm_core.backoff up to this many seconds.
RECONNECT_MAX = 30.0


class ApiError(Exception):
    """Any failed call: the server's error envelope, or a transport problem (status 0)."""

    def __init__(self, code: str, message: str, status: int = 0, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


class _HostList(BaseModel):
    hosts: list[Host]


@dataclass(frozen=True)
class Event:
    """One frame from /api/v1/events: `{type, ts, payload}`."""

    type: str
    ts: datetime | None
    payload: dict[str, Any]


class EventStream:
    """An open events WebSocket: iterate for frames, send subscribe/unsubscribe."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    @property
    def close_reason(self) -> str:
        """" (code 1008)" once the server closed the stream with a code; "" otherwise."""
        code = self._ws.close_code
        return f" (code {code})" if code else ""

    async def subscribe(self, job_id: str) -> None:
        await self._ws.send_str(json.dumps({"type": "subscribe", "job_id": job_id}))

    async def unsubscribe(self, job_id: str) -> None:
        await self._ws.send_str(json.dumps({"type": "unsubscribe", "job_id": job_id}))

    async def __aiter__(self) -> AsyncIterator[Event]:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            try:
                data = json.loads(msg.data)
                ts = datetime.fromisoformat(data["ts"]) if data.get("ts") else None
                yield Event(str(data["type"]), ts, data.get("payload") or {})
            except (ValueError, KeyError, TypeError):
                continue  # a frame we cannot read is not worth dropping the stream for


class Client:
    """One operator session against one server. Create and use inside a running event loop."""

    def __init__(self, base_url: str, fingerprint: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.fingerprint = normalise_fingerprint(fingerprint)
        if self.fingerprint and not self.base_url.startswith("https://"):
            raise ValueError("--fingerprint pins a TLS certificate: use an https:// server URL")
        self.token: str | None = None
        self.operator: Operator | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def _ssl(self) -> aiohttp.Fingerprint | bool:
        # aiohttp.Fingerprint compares the SHA-256 of the peer's DER certificate and skips
        # CA verification, which is what pinning a self-signed certificate means.
        return aiohttp.Fingerprint(bytes.fromhex(self.fingerprint)) if self.fingerprint else True

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._session

    @property
    def role(self) -> str | None:
        return self.operator.role.value if self.operator else None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _untrusted(self) -> ApiError:
        return ApiError("untrusted_certificate",
                        f"{self.base_url} has a certificate no CA vouches for (self-signed?): start rm-tui with "
                        "--fingerprint SHA256 as printed by `rm-server serve --self-signed`")

    def url(self, path: str) -> str:
        return f"{self.base_url}/api/v1{path}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, raw: bool = False, **kw: Any) -> Any:
        """The decoded JSON body (raw=True: the bytes of a successful answer)."""
        try:
            async with self._http().request(method, self.url(path), headers=self._headers(), ssl=self._ssl,
                                            **kw) as resp:
                if resp.status == 204:
                    return None
                if raw and resp.status < 400:
                    return await resp.read()
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                if resp.status >= 400:
                    raise _envelope_error(resp.status, body)
                return body
        except aiohttp.ServerFingerprintMismatch as exc:
            raise ApiError("fingerprint_mismatch",
                           f"server certificate fingerprint {exc.got.hex()} does not match the pinned "
                           f"{exc.expected.hex()}: refusing to talk to it") from None
        except aiohttp.ClientConnectorCertificateError:
            raise self._untrusted() from None
        except aiohttp.ClientError as exc:
            raise ApiError("unreachable", f"cannot reach {self.base_url}: {exc}") from None
        except TimeoutError:
            raise ApiError("timeout", f"{self.base_url} did not answer in time") from None

    # ------------------------------------------------------------ auth

    async def login(self, username: str, password: str) -> Operator:
        body = await self.request("POST", "/auth/login", json={"username": username, "password": password})
        resp = LoginResponse.model_validate(body)
        self.token, self.operator = resp.token, resp.operator
        return resp.operator

    async def logout(self) -> None:
        if self.token:
            await self.request("POST", "/auth/logout")
            self.token = None

    # ------------------------------------------------------------ reads

    async def hosts(self) -> list[Host]:
        """Every host, fetched in pages of HOSTS_PAGE (keyset by id, as GET /hosts pages)."""
        # Pages, not one body: 20,000 hosts are an 8 MB body, and parsing it in one piece
        # needs several times that in transient memory that the process keeps afterwards
        # (the console's RSS peak); a page's worth is a fraction of it, the total time the same.
        hosts: list[Host] = []
        pending = asyncio.ensure_future(self._host_bytes(None))
        ahead: asyncio.Task[bytes] | None = None
        try:
            while True:
                raw = await pending
                # The next page is asked for before this one is parsed, so the server builds it
                # while this process parses: its `after` is guessed from the bytes (the last
                # host object's id) and checked against the parsed page below.
                guess = _last_host_id(raw)
                ahead = asyncio.ensure_future(self._host_bytes(guess)) if guess else None
                page = self._host_page(raw)
                hosts.extend(page)
                if len(page) < HOSTS_PAGE:
                    return hosts
                if ahead is None or guess != page[-1].id:
                    if ahead is not None:
                        ahead.cancel()
                    ahead = asyncio.ensure_future(self._host_bytes(page[-1].id))
                pending, ahead = ahead, None
        finally:
            for task in (pending, ahead):
                if task is not None and not task.done():
                    task.cancel()

    async def _host_bytes(self, after: str | None) -> bytes:
        params = {"limit": str(HOSTS_PAGE)}
        if after:
            params["after"] = after
        body = await self.request("GET", "/hosts", raw=True, params=params)
        if not isinstance(body, bytes):  # 204: no body where a page was due
            raise ApiError("bad_reply", "the server answered the host list without a body")
        return body

    def _host_page(self, raw: bytes) -> list[Host]:
        # pydantic parses the bytes straight into models (no intermediate dicts). Every object
        # built here lives on: a collection while they pile up finds no garbage, yet each full
        # one walks the whole heap (several per 20,000 hosts otherwise).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return _HostList.model_validate_json(raw).hosts
        except ValidationError as exc:
            raise ApiError("bad_response", f"{self.base_url} sent a host list this console cannot read: "
                           f"{exc.errors()[0].get('msg', exc)}") from None
        finally:
            if was_enabled:
                gc.enable()

    async def fleet_crons(self) -> dict[str, list[tuple[str, str]]]:
        """host_id -> its enabled (cron, timezone) pairs, from one grouped reply (GET /fleet/crons)."""
        body = await self.request("GET", "/fleet/crons")
        out: dict[str, list[tuple[str, str]]] = {}
        try:
            for entry in body["crons"]:
                pair = (str(entry["cron"]), str(entry.get("timezone") or "UTC"))
                for host_id in entry["host_ids"]:
                    out.setdefault(host_id, []).append(pair)
        except (KeyError, TypeError) as exc:
            raise ApiError("bad_response", f"{self.base_url} sent a cron list this console cannot read: {exc}") from None
        return out

    async def host(self, host_id: str) -> Host:
        return Host.model_validate(await self.request("GET", f"/hosts/{host_id}"))

    async def jobs(self, host_id: str | None = None, limit: int = 50, state: str | None = None) -> list[Job]:
        params: dict[str, str] = {"limit": str(limit)}
        if host_id:
            params["host_id"] = host_id
        if state:
            params["state"] = state
        body = await self.request("GET", "/jobs", params=params)
        return [Job.model_validate(j) for j in body["jobs"]]

    async def job(self, job_id: str) -> Job:
        return Job.model_validate(await self.request("GET", f"/jobs/{job_id}"))

    async def job_logs(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> JobLogPage:
        body = await self.request("GET", f"/jobs/{job_id}/logs",
                                  params={"after_seq": str(after_seq), "limit": str(limit)})
        return JobLogPage.model_validate(body)

    async def source_groups(self, host_id: str) -> list[SourceGroup]:
        body = await self.request("GET", f"/hosts/{host_id}/source-groups")
        return [SourceGroup.model_validate(g) for g in body["source_groups"]]

    async def schedules(self, host_id: str) -> ScheduleList:
        return ScheduleList.model_validate(await self.request("GET", f"/hosts/{host_id}/schedules"))

    # ------------------------------------------------------------ actions

    async def run_source_group(self, host_id: str, group_id: str) -> Job:
        body = await self.request("POST", f"/hosts/{host_id}/source-groups/{group_id}/run")
        return Job.model_validate(body["job"])

    async def run_schedule(self, host_id: str, schedule_id: str) -> list[Job]:
        body = await self.request("POST", f"/hosts/{host_id}/schedules/{schedule_id}/run")
        return [Job.model_validate(j) for j in body["jobs"]]

    async def create_job(self, host_id: str, body: dict[str, Any]) -> Job:
        resp = await self.request("POST", f"/hosts/{host_id}/jobs", json=body)
        return Job.model_validate(resp["job"] if "job" in resp else resp)

    async def cancel_job(self, job_id: str) -> Job:
        return Job.model_validate(await self.request("POST", f"/jobs/{job_id}/cancel"))

    # ------------------------------------------------------------ source groups and schedules

    async def save_source_group(self, host_id: str, body: dict[str, Any], group_id: str | None = None) -> SourceGroup:
        """Create (no id) or replace a source group."""
        if group_id:
            resp = await self.request("PUT", f"/hosts/{host_id}/source-groups/{group_id}", json=body)
        else:
            resp = await self.request("POST", f"/hosts/{host_id}/source-groups", json=body)
        return SourceGroup.model_validate(resp)

    async def delete_source_group(self, host_id: str, group_id: str) -> None:
        await self.request("DELETE", f"/hosts/{host_id}/source-groups/{group_id}")

    async def save_schedule(self, host_id: str, body: dict[str, Any], schedule_id: str | None = None) -> Schedule:
        if schedule_id:
            resp = await self.request("PUT", f"/hosts/{host_id}/schedules/{schedule_id}", json=body)
        else:
            resp = await self.request("POST", f"/hosts/{host_id}/schedules", json=body)
        return Schedule.model_validate(resp)

    async def delete_schedule(self, host_id: str, schedule_id: str) -> None:
        await self.request("DELETE", f"/hosts/{host_id}/schedules/{schedule_id}")

    # ------------------------------------------------------------ host settings

    async def snapshots(self, host_id: str) -> list[Snapshot]:
        body = await self.request("GET", f"/hosts/{host_id}/snapshots")
        return [Snapshot.model_validate(s) for s in body["snapshots"]]

    async def maintenance(self, host_id: str) -> Maintenance:
        return Maintenance.model_validate(await self.request("GET", f"/hosts/{host_id}/maintenance"))

    async def set_maintenance(self, host_id: str, body: dict[str, Any]) -> Maintenance:
        return Maintenance.model_validate(await self.request("PUT", f"/hosts/{host_id}/maintenance", json=body))

    async def bandwidth(self, host_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/hosts/{host_id}/bandwidth") or {}

    async def set_bandwidth(self, host_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", f"/hosts/{host_id}/bandwidth", json=body) or {}

    async def repo(self, host_id: str) -> RepoInfo | None:
        """The host's repository (URL redacted by the server); None when none is configured."""
        try:
            return RepoInfo.model_validate(await self.request("GET", f"/hosts/{host_id}/repo"))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # ------------------------------------------------------------ administration

    async def enrollment_tokens(self) -> list[EnrollmentToken]:
        body = await self.request("GET", "/enrollment-tokens")
        return [EnrollmentToken.model_validate(t) for t in body["tokens"]]

    async def create_enrollment_token(self, body: dict[str, Any]) -> EnrollmentTokenCreated:
        return EnrollmentTokenCreated.model_validate(await self.request("POST", "/enrollment-tokens", json=body))

    async def delete_enrollment_token(self, token_id: str) -> None:
        await self.request("DELETE", f"/enrollment-tokens/{token_id}")

    async def audit(self, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        params = {"limit": str(limit)}
        if before is not None:
            params["before"] = str(before)
        body = await self.request("GET", "/audit", params=params)
        return [AuditEntry.model_validate(e) for e in body["entries"]]

    async def operators(self) -> list[Operator]:
        body = await self.request("GET", "/operators")
        return [Operator.model_validate(o) for o in body["operators"]]

    async def create_operator(self, body: dict[str, Any]) -> Operator:
        return Operator.model_validate(await self.request("POST", "/operators", json=body))

    async def update_operator(self, operator_id: str, body: dict[str, Any]) -> Operator:
        return Operator.model_validate(await self.request("PATCH", f"/operators/{operator_id}", json=body))

    async def delete_operator(self, operator_id: str) -> None:
        await self.request("DELETE", f"/operators/{operator_id}")

    # ------------------------------------------------------------ events

    @asynccontextmanager
    async def events(self) -> AsyncIterator[EventStream]:
        """Open the operator events WebSocket; raises ApiError when it cannot."""
        url = self.url("/events").replace("http", "ws", 1)
        try:
            ws = await self._http().ws_connect(url, headers=self._headers(), ssl=self._ssl, heartbeat=30,
                                               timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except aiohttp.WSServerHandshakeError as exc:
            raise ApiError("events_refused", f"events stream refused: {exc.status} {exc.message}",
                           exc.status) from None
        except aiohttp.ServerFingerprintMismatch:
            raise ApiError("fingerprint_mismatch", "server certificate fingerprint does not match the pinned one") \
                from None
        except aiohttp.ClientConnectorCertificateError:
            raise self._untrusted() from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError("unreachable", f"cannot open the events stream: {exc}") from None
        try:
            yield EventStream(ws)
        finally:
            await ws.close()


def _last_host_id(raw: bytes) -> str | None:
    """The id of the last host in a full page of GET /hosts, read without parsing; None when
    the page is not full or the bytes do not look as expected (the caller then waits)."""
    if raw.count(b'{"id":"') < HOSTS_PAGE:
        return None
    start = raw.rfind(b'{"id":"') + 7
    end = raw.find(b'"', start)
    return raw[start:end].decode("ascii", "replace") if end > start else None


def _envelope_error(status: int, body: Any) -> ApiError:
    err = ErrorBody.from_envelope(body, status)
    return ApiError(err.code, err.message, status, err.details)
