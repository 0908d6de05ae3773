"""One rule on one series, tick by tick: when an alert opens, how long the value has been
beyond the rule's level, and the peak while it is open. Pure logic: the evaluator
(alerts/evaluator.py) stores what it decides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from alerts.models import Alert, AlertRule


@dataclass(frozen=True)
class Levels:
    """A rule's two levels, as values: its own, or its multiples of a baseline."""

    level: float
    clear_level: float


@dataclass
class Tracker:
    """The state of one rule on one series.

    Opening: the value is at or beyond `level` (>= for 'above', <= for 'below') on consecutive
    samples covering at least the rule's `duration` seconds (from the start of the first to the
    end of the last; 0: the first such sample opens). Closing (hysteresis): the value is back
    strictly beyond `clear_level` (< for 'above', > for 'below'); between the two levels an open
    alert stays open and a closed one stays closed. The peak is the most extreme value while
    open (the highest for 'above', the lowest for 'below').
    """

    alert: Alert | None = None  # the open alert
    beyond_since: datetime | None = None  # start of the first of the samples beyond level
    peak_stored: float | None = None  # the peak as the database has it

    def step(
        self, rule: AlertRule, levels: Levels, value: float, start: datetime, end: datetime
    ) -> str | None:
        """Take in one sample's value: "open" or "close" when the alert should, else None
        (the caller opens or closes it; a peak is kept in the open alert)."""
        above = rule.condition == AlertRule.ABOVE
        if self.alert is not None:
            self.alert.peak = max(self.alert.peak, value) if above else min(self.alert.peak, value)
            back = value < levels.clear_level if above else value > levels.clear_level
            return "close" if back else None
        beyond = value >= levels.level if above else value <= levels.level
        if not beyond:
            self.beyond_since = None
            return None
        if self.beyond_since is None:
            self.beyond_since = start
        return "open" if (end - self.beyond_since).total_seconds() >= rule.duration else None

    @property
    def peak_changed(self) -> bool:
        return self.alert is not None and self.alert.peak != self.peak_stored
