"""CSV for ?format=csv: the history as a table, one row per step."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from rest_framework.renderers import BaseRenderer


class HistoryCSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context=None
    ) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        if isinstance(data, dict) and "timestamps" in data:
            names = list(data["series"])
            writer.writerow(["timestamp", *names])
            for i, stamp in enumerate(data["timestamps"]):
                when = datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")
                values = (data["series"][name][i] for name in names)
                writer.writerow([when, *("" if value is None else value for value in values)])
        else:  # an error answer: which parameter, and why
            writer.writerow(["parameter", "message"])
            for key, messages in (data or {}).items():
                for message in messages if isinstance(messages, list) else [messages]:
                    writer.writerow([key, message])
        return out.getvalue().encode(self.charset)
