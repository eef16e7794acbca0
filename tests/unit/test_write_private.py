"""rm_server.security.write_private: a 0600 file replaced atomically, also while another
process writes the same file (the replicas of `serve --workers N` start at once on one data
dir and each writes the shared metrics token)."""

import os
import stat
import threading

from rm_server.security import write_private


def test_writers_at_once_each_replace_the_file_whole(tmp_path):
    path = tmp_path / "metrics-token"
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(n: int) -> None:
        start.wait()
        try:
            for _ in range(300):
                write_private(path, f"token-{n}\n".encode() * 100)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    body = path.read_text()
    assert body in {f"token-{n}\n" * 100 for n in range(4)}  # one writer's whole file, never a mix
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics-token"]  # no temp file left
