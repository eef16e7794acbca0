"""Part of scripts/demo: sign in, and when the agent is available enroll a local agent,
give it a local repository and a source group, and run a first backup."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def call(url: str, method: str = "GET", body: dict | None = None, token: str | None = None,
         missing_ok: bool = False) -> dict | None:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        if missing_ok and exc.code == 404:
            return None
        sys.exit(f"demo: {method} {url} -> {exc.code}: {exc.read().decode()[:300]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--bin", required=True)
    args = ap.parse_args()
    api = args.server + "/api/v1"
    token = call(api + "/auth/login", "POST", {"username": "admin",
                                               "password": Path(args.password_file).read_text().strip()})["token"]
    print("demo: signed in as admin")
    agent = Path(args.bin) / "rm-agent"
    try:
        import rm_agent.cli  # noqa: F401
    except ImportError:
        print("demo: rm-agent is not built yet; the server alone is running")
        return
    demo = Path(args.dir)
    config = demo / "agent" / "agent.json"
    if not config.exists():
        tok = call(api + "/enrollment-tokens", "POST", {"name": "demo"}, token)
        subprocess.run([str(agent), "enroll", "--server", args.server, "--token", tok["token"], "--config", str(config)],
                       check=True)
    host_id = json.loads(config.read_text())["host_id"]
    log = open(demo / "agent.log", "ab")
    proc = subprocess.Popen([str(agent), "run", "--config", str(config)], stderr=log, stdout=log,
                            start_new_session=False)
    (demo / "agent.pid").write_text(str(proc.pid))
    repo = demo / "repo"
    data = demo / "data"
    data.mkdir(exist_ok=True)
    (data / "hello.txt").write_text("restic-manager demo file\n")
    if call(api + f"/hosts/{host_id}/repo", token=token, missing_ok=True) is None:
        # The password is minted once; a second PUT would lock the agent out of the repository.
        call(api + f"/hosts/{host_id}/repo", "PUT", {"url": str(repo), "generate_password": True}, token)
    groups = call(api + f"/hosts/{host_id}/source-groups", token=token)["source_groups"]
    group = next((g for g in groups if g["name"] == "demo"), None) or call(
        api + f"/hosts/{host_id}/source-groups", "POST",
        {"name": "demo", "includes": [str(data)], "retention": {"keep_last": 10}}, token)
    deadline = time.time() + 60
    while call(api + f"/hosts/{host_id}", token=token)["status"] != "online":
        if time.time() > deadline:
            sys.exit("demo: the agent did not come online; see " + str(demo / "agent.log"))
        time.sleep(0.3)
    job = call(api + f"/hosts/{host_id}/source-groups/{group['id']}/run", "POST", {}, token)["job"]
    while True:
        job = call(api + f"/jobs/{job['id']}", token=token)
        if job["state"] in ("succeeded", "warning", "failed", "cancelled", "lost"):
            break
        if time.time() > deadline + 120:
            sys.exit("demo: the first backup did not finish in time")
        time.sleep(0.5)
    print(f"demo: backup {job['state']}: {json.dumps(job.get('summary') or job.get('error'))[:200]}")
    if shutil.which("restic") is None:
        print("demo: restic is missing")


if __name__ == "__main__":
    main()
