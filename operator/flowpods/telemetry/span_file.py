"""The span file: the JSON lines of SpanRecords a worker process hands its spans back in (read without the SDK)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import ValidationError

from flowpods.core.records import SpanRecord

log = logging.getLogger(__name__)


def read_span_file(path: str | os.PathLike[str]) -> list[SpanRecord]:
    """The spans in a JSON-lines file; a missing file is empty and a torn last line is skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records: list[SpanRecord] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(SpanRecord.model_validate_json(line))
        except ValidationError:
            log.warning("%s:%d is not a span record; skipped", path, number)
    return records
