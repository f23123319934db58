"""What a check of a quiet deployment found: how many of each thing it checked, and the problems."""

from __future__ import annotations

import dataclasses
from collections import defaultdict


@dataclasses.dataclass
class CheckReport:
    name: str  # e.g. "order check", the start of the summary
    checked: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        counts = ", ".join(f"{name} {count}" for name, count in self.checked.items())
        verdict = "OK" if self.ok else f"{len(self.problems)} problems"
        return f"{self.name}: {counts}: {verdict}"

    def problem(self, text: str) -> None:
        self.problems.append(text)
