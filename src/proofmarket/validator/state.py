"""What a validator remembers across restarts: the event cursor, its verdicts and the requests it follows."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_VERDICTS = 10_000  # verdicts kept in the state file


@dataclass
class Verdict:
    request_id: int
    verdict: str  # reproduced | cheated | cannot_check | unavailable
    reason: str
    seconds: float = 0.0

    @property
    def cheated(self) -> bool | None:
        return {"reproduced": False, "cheated": True}.get(self.verdict)


@dataclass
class Pending:
    request_id: int
    node: str
    instances: list[int]
    digest: str
    commit_block: int
    window_end: int
    challenged: bool = False


@dataclass
class ValidatorState:
    next_block: int
    verdicts: dict[int, dict[str, Any]] = field(default_factory=dict)
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, start: int) -> ValidatorState:
        if not path.exists():
            return cls(start)
        data = json.loads(path.read_text())
        return cls(int(data["next_block"]), {int(k): v for k, v in data.get("verdicts", {}).items()},
                   {int(k): v for k, v in data.get("pending", {}).items()})

    def save(self, path: Path) -> None:
        if len(self.verdicts) > MAX_VERDICTS:  # keep the newest: settled requests are not looked at again
            self.verdicts = dict(sorted(self.verdicts.items())[-MAX_VERDICTS:])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"next_block": self.next_block, "verdicts": self.verdicts,
                                   "pending": self.pending}))
        os.replace(tmp, path)

