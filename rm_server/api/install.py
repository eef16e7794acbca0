"""GET /install/*: what a new host downloads, each answer carrying its SHA-256."""

from __future__ import annotations

from aiohttp import web

from rm_server.api.common import PUBLIC, requires
from rm_server.api.doc import Raw, documented
from rm_server.errors import NotFoundError
from rm_server.install import AGENT_PYZ, RESTIC, SCRIPT, UNIT, Installer
from rm_server.keys import CONFIG, INSTALLER

routes = web.RouteTableDef()
SUM_HEADER = "X-Checksum-SHA256"
SUMS = {SUM_HEADER: "the SHA-256 of the body (lowercase hex); install.sh checks it"}


def installer(app: web.Application) -> Installer:
    return app[INSTALLER]


def setup(app: web.Application) -> None:
    app[INSTALLER] = Installer(app[CONFIG])


async def install_command(app: web.Application, token: str) -> str:
    return await installer(app).command(token)


@routes.get(f"/install/{SCRIPT}")
@requires(PUBLIC)
@documented("The agent installer script the enrollment one-liner runs",
            reply=Raw("text/x-shellscript", "A POSIX shell script with this server's URL, TLS pin and the agent file's SHA-256 filled in."),
            headers=SUMS)
async def install_sh(request: web.Request) -> web.Response:
    body = await installer(request.app).script()
    sums = await installer(request.app).sums()
    return web.Response(body=body, content_type="text/x-shellscript", headers={SUM_HEADER: sums[SCRIPT]})


@routes.get(f"/install/{UNIT}")
@requires(PUBLIC)
@documented("The agent's systemd unit, as install.sh writes it",
            reply=Raw("text/plain", "A hardened rm-agent.service unit file."), headers=SUMS)
async def unit(request: web.Request) -> web.Response:
    inst = installer(request.app)
    sums = await inst.sums()
    return web.Response(body=inst.unit(), content_type="text/plain", headers={SUM_HEADER: sums[UNIT]})


@routes.get(f"/install/{AGENT_PYZ}")
@requires(PUBLIC)
@documented("The agent as one file (a Python zipapp)",
            description="A copy in the server's data dir wins over the one the server file carries; 404 when "
                        "the server runs from source and has neither.",
            reply=Raw("application/octet-stream", "rm-agent.pyz."), errors=(404,), headers=SUMS)
async def agent_pyz(request: web.Request) -> web.StreamResponse:
    inst = installer(request.app)
    path = inst.agent_path()
    if path is None:
        raise NotFoundError("this server carries no agent build (it runs from source): build one with "
                            "scripts/build-zipapps and copy dist/rm-agent.pyz into the server's data dir, "
                            "or run the server from dist/rm-server.pyz")
    return web.FileResponse(path, headers={SUM_HEADER: await inst.file_sum(path),
                                           "Content-Type": "application/octet-stream"})


@routes.get(f"/install/{RESTIC}")
@requires(PUBLIC)
@documented("restic for hosts whose own is missing or too old (install.sh --install-restic)",
            description="Served only when an admin put a restic build (x86-64 Linux, 0.14 or newer) in the "
                        "server's data dir as `restic`; install.sh carries its SHA-256. 404 otherwise.",
            reply=Raw("application/octet-stream", "The restic binary."), errors=(404,), headers=SUMS)
async def restic(request: web.Request) -> web.StreamResponse:
    inst = installer(request.app)
    path = inst.restic_path()
    if path is None:
        raise NotFoundError("this server hands out no restic: an admin can put a restic build (x86-64 Linux, "
                            "0.14 or newer) in the server's data dir as 'restic'")
    return web.FileResponse(path, headers={SUM_HEADER: await inst.file_sum(path),
                                           "Content-Type": "application/octet-stream"})


@routes.get("/install/SHA256SUMS")
@requires(PUBLIC)
@documented("SHA-256 of every installer file, in `sha256sum -c` format",
            reply=Raw("text/plain", "Lines `<sha256>  <file name>`."))
async def sums(request: web.Request) -> web.Response:
    """`sha256sum -c` format, for an admin checking files fetched by hand."""
    lines = [f"{digest}  {name}\n" for name, digest in sorted((await installer(request.app).sums()).items())]
    return web.Response(text="".join(lines), content_type="text/plain")
