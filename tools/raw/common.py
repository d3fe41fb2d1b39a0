"""What every raw-data converter shares: how a bad input is reported and collected."""
from __future__ import annotations

import multiprocessing

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

    def add_earlier(self, skipped: dict, source_of=str) -> None:
        """Skips an interrupted earlier run of the same conversion recorded: listed like this run's,
        and under strict the first one stops the run (strict promises that nothing was left out)."""
        for name, reason in skipped.items():
            self.add(source_of(name), reason)

    def report_lines(self, what: str = "") -> list:
        """The final report's list of everything left out (empty when nothing was)."""
        if not self.items:
            return []
        return [f"skipped {len(self.items)}{' ' + what if what else ''}:"] + [f"  {s}: {r}" for s, r, _ in self.items]


def parallel_map(fn, jobs: list, workers: int, desc: str, unit: str):
    """fn over jobs with a progress bar, in `workers` processes (in this one for 1), results in
    completion order. The pool is torn down when the caller stops iterating, on error included."""
    pool = multiprocessing.Pool(workers) if workers > 1 and len(jobs) > 1 else None
    try:
        results = pool.imap_unordered(fn, jobs, chunksize=8) if pool else map(fn, jobs)
        yield from tqdm(results, total=len(jobs), desc=desc, unit=unit)
    finally:
        if pool:
            pool.terminate()
