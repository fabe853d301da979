"""Progress reporting for long partition loops (logged to the run's event log)."""

from __future__ import annotations

import time

import dagster as dg


class Progress:
    """Logs ``done/total`` with an ETA at most every ``every_s`` seconds, and once at the end."""

    def __init__(self, context: dg.AssetExecutionContext, label: str, total: int, every_s: float = 5.0):
        self.context, self.label, self.total, self.every_s = context, label, total, every_s
        self.done = 0
        self.started = self.last = time.monotonic()

    def step(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self.done >= self.total or now - self.last >= self.every_s:
            self.last = now
            elapsed = now - self.started
            eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            self.context.log.info(
                f"{self.label}: {self.done}/{self.total} symbol-days ({self.done / max(self.total, 1):.0%}), "
                f"{elapsed:.1f}s elapsed, ~{eta:.0f}s left"
            )
