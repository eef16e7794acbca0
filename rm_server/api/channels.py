"""Notification channels (admin): where alerts go, as Apprise URLs (DESIGN.md §11)."""

from __future__ import annotations

from aiohttp import web

from rm_core.alerts import Channel, ChannelBody, ChannelTestResult
from rm_core.enums import Role
from rm_server.api.common import actor, parse_body, reply, requires
from rm_server.api.doc import Listing, documented
from rm_server.keys import CHANNELS

routes = web.RouteTableDef()

PATH = "/api/v1/notification-channels"
_URL_NOTE = ("`url` is an Apprise URL (`mailto://`, `slack://`, `ntfy://`, `matrix://`, `msteams://`, "
             "`pagerduty://`, `json://` …). It is a secret: sealed with the master key, shown only redacted "
             "(scheme and host) after this call, never logged or audited. An address in 169.254.0.0/16 or "
             "fe80::/10 is refused unless the server runs with --allow-link-local-alerts.")
_EXAMPLES = {
    "mail": {"name": "ops mail", "url": "mailtos://alerts:app-password@smtp.example.com?to=ops@example.com",
             "events": ["backup.failed", "host.offline", "drill.failed"], "min_interval_s": 300},
    "ntfy": {"name": "phones", "url": "ntfys://ntfy.example.com/restic-alerts", "events": ["repo.unreachable"]},
}


@routes.get(PATH)
@requires(Role.admin)
@documented("List notification channels", description="URLs redacted; `last_error`, `failures` and `pending` "
                                                      "say how each channel's sending goes.",
            reply=Listing("channels", Channel))
async def list_channels(request: web.Request) -> web.Response:
    return reply({"channels": await request.app[CHANNELS].all()})


@routes.post(PATH)
@requires(Role.admin)
@documented("Create a notification channel", description=_URL_NOTE, body=ChannelBody, reply=Channel, status=201,
            errors=(409,), examples=_EXAMPLES)
async def create_channel(request: web.Request) -> web.Response:
    body = await parse_body(request, ChannelBody)
    return reply(await request.app[CHANNELS].create(actor(request), body), 201)


@routes.get(PATH + "/{id}")
@requires(Role.admin)
@documented("One notification channel", reply=Channel)
async def get_channel(request: web.Request) -> web.Response:
    return reply(await request.app[CHANNELS].get(request.match_info["id"]))


@routes.put(PATH + "/{id}")
@requires(Role.admin)
@documented("Replace a notification channel", description="The whole channel, URL included. " + _URL_NOTE,
            body=ChannelBody, reply=Channel, errors=(409,), examples=_EXAMPLES)
async def put_channel(request: web.Request) -> web.Response:
    body = await parse_body(request, ChannelBody)
    return reply(await request.app[CHANNELS].update(actor(request), request.match_info["id"], body))


@routes.delete(PATH + "/{id}")
@requires(Role.admin)
@documented("Delete a notification channel", description="Digests still waiting for it are dropped.",
            reply=None, status=204)
async def delete_channel(request: web.Request) -> web.Response:
    await request.app[CHANNELS].delete(actor(request), request.match_info["id"])
    return web.Response(status=204)


@routes.post(PATH + "/{id}/test")
@requires(Role.admin)
@documented("Send a test message through the channel now",
            description="200 when the service took it (digests waiting for a retry then go at once); 502 "
                        "`channel_failed` with the service's error (secrets removed) when it did not.",
            reply=ChannelTestResult, errors=(502,))
async def test_channel(request: web.Request) -> web.Response:
    return reply(await request.app[CHANNELS].test(actor(request), request.match_info["id"]))
