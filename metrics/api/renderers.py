"""How answers are written: JSON by orjson, and CSV for the history's ?format=csv."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import orjson
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.utils.encoders import JSONEncoder


class FastJSONRenderer(JSONRenderer):
    """DRF's JSON renderer with orjson's encoder: a history answer has tens of thousands of
    floats, which the standard library's encoder takes several times longer to write."""

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context=None
    ) -> bytes:
        if data is None:
            return b""
        # What orjson does not know (lazy strings, Decimals...) goes through DRF's own encoder.
        return orjson.dumps(data, default=JSONEncoder().default)


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
