"""What every raw-data converter shares: how a bad input is reported and collected."""
from __future__ import annotations

from tqdm import tqdm


def say(message: str) -> None:
    tqdm.write(message)  # keeps a running progress bar intact


class InputError(ValueError):
    """A bad input: where it is (a file, maybe with a line) and why it is bad."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason

    def __reduce__(self):  # raised in worker processes, so it must survive pickling
        return type(self), (self.source, self.reason)


class Problems:
    """Bad inputs met so far; with strict=True the first one is raised instead of recorded."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.items = []  # (source, reason, split or None)

    def add(self, source: str, reason: str, split: str | None = None) -> None:
        if self.strict:
            raise InputError(source, reason)
        self.items.append((source, reason, split))
        say(f"skipped {source}: {reason}")
