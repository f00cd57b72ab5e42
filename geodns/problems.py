"""The one error shape operators see: every problem at once, each as `file:line: problem`."""

from __future__ import annotations


class Problems(Exception):
    """Input that cannot be used; ``problems`` lists every ``FILE:LINE: problem`` line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
