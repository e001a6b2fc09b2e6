"""The processes' logging: readable lines by default, JSON with LOG_FORMAT=json.

A JSON line carries only allowlisted fields: time, level, logger, message, the workflow's and the
activity's ids from the SDK's logging context (workflow id, run id, activity type, attempt, ...)
and, for an error, its exception type and stack (file, line, function). Never an exception's
message: a provider's or the database's error text may quote a customer's address or name. The
product's own messages name ids (case, invoice, email key), never a customer's data
(tests/test_operating.py checks them on a real case).
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime
from typing import Any, Literal

from temporalio import activity, workflow

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# the SDK's logging context (the `temporal_workflow` / `temporal_activity` extras), by field
WORKFLOW_FIELDS = ("workflow_id", "run_id", "workflow_type", "task_queue", "namespace", "attempt")
ACTIVITY_FIELDS = (
    "activity_type",
    "activity_id",
    "attempt",
    "workflow_id",
    "workflow_run_id",
    "workflow_type",
    "task_queue",
    "namespace",
)
RENAMED = {"workflow_run_id": "run_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line, of allowlisted fields only."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for extra, fields in (
            ("temporal_workflow", WORKFLOW_FIELDS),
            ("temporal_activity", ACTIVITY_FIELDS),
        ):
            context = getattr(record, extra, None)
            if isinstance(context, dict):
                for field in fields:
                    if context.get(field) is not None:
                        line[RENAMED.get(field, field)] = context[field]
        if record.exc_info and record.exc_info[0] is not None:
            kind, _, trace = record.exc_info
            line["error_type"] = kind.__name__
            line["stack"] = [
                f"{frame.filename}:{frame.lineno} {frame.name}"
                for frame in traceback.extract_tb(trace)
            ]
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(log_format: Literal["text", "json"], level: int = logging.INFO) -> None:
    """The root logger's one handler, in the chosen format (replacing any earlier one)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        # the ids travel as fields, not appended to every message
        activity.logger.activity_info_on_message = False
        workflow.logger.workflow_info_on_message = False
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
