"""A fleet bench run over several sizes (server_scale, tui_scale): the size's log lines, its
temporary work directory, and the loop that runs each size and records one that failed
so that the next size still runs."""

from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable


def size_log(n: int) -> Callable[..., None]:
    """print() for one size: `[   500] …` on stderr. sys.__stderr__, not sys.stderr: while
    tui_scale's app runs, Textual captures sys.stderr for itself."""
    return lambda *a: print(f"[{n:>6}] " + " ".join(str(x) for x in a), file=sys.__stderr__, flush=True)


def size_work_dir(n: int, prefix: str) -> tuple[Path, Path]:
    """A fresh temporary directory for size n and the server's data dir inside it."""
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-{n}-"))
    data_dir = work / "data"
    data_dir.mkdir(mode=0o700)
    return work, data_dir


def run_sizes(sizes: list[int], run: Callable[[int], dict], key: str, *, show_traceback: bool = False) -> list[dict]:
    """run(n) for each size; a size that raises is recorded as {key: n, "failed": "Type: message"}
    and said on stderr (the traceback, or one FAILED line)."""
    results = []
    for n in sizes:
        try:
            results.append(run(n))
        except Exception as exc:
            if show_traceback:
                traceback.print_exc()
            else:
                size_log(n)(f"FAILED: {type(exc).__name__}: {exc}")
            results.append({key: n, "failed": f"{type(exc).__name__}: {exc}"})
    return results
