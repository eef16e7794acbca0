"""What `restic copy` printed: which snapshots it copied and which were there already.

restic has no JSON for copy (0.14 to 0.18); its text is steady across those versions:

    snapshot 964b7c43 of [/srv/www] at 2026-12-07 00:38:58 +0000 UTC)   (0.18 adds "by user@host")
      copy started, this may take a while...
    snapshot b95311e5 saved
    skipping source snapshot 964b7c43, was already copied to snapshot b95311e5   (0.14; 0.18 only with -v)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List

_SOURCE = re.compile(r"^snapshot ([0-9a-f]{8,64}) of \[")
_SAVED = re.compile(r"^snapshot ([0-9a-f]{8,64}) saved")
_SKIPPED = re.compile(r"^skipping (?:source )?snapshot ([0-9a-f]{8,64}), was already copied to snapshot ([0-9a-f]{8,64})")


@dataclass
class CopyOutput:
    """Fed restic copy's stdout line by line; `summary()` is what the job reports."""

    copied: List[Dict[str, str]] = field(default_factory=list)  # [{"from": src, "to": dst}]
    skipped: int = 0
    considered: int = 0
    _current: str | None = None

    def feed(self, line: str) -> None:
        line = line.strip()
        m = _SOURCE.match(line)
        if m:
            self._current = m.group(1)
            self.considered += 1
            return
        m = _SAVED.match(line)
        if m:
            self.copied.append({"from": self._current or "", "to": m.group(1)})
            self._current = None
            return
        if _SKIPPED.match(line):
            self.skipped += 1
            self._current = None

    def summary(self) -> Dict[str, Any]:
        # 0.18 does not say it skipped a snapshot: what it considered and did not save was there already
        already = max(self.skipped, self.considered - len(self.copied))
        return {"copied": len(self.copied), "already_copied": already, "copied_snapshots": self.copied[:100]}
