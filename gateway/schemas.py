"""The HTTP contract as marshmallow schemas: inbound tasks and outbound representations."""

from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import RAISE, Schema, ValidationError, fields, validate

CLIENT_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
TASK_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class FullMatch(validate.Regexp):
    """Regexp where the whole value must match: with re.match, "$" also matches before a final
    newline, so "T-1\\n" would pass as a task-id."""

    def __call__(self, value: str) -> str:
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


_task_id = FullMatch(TASK_ID, error="must match {regex}")
_identifier = validate.Length(min=1, max=128)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class CustomerUpsert(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    email = fields.Email(required=True, validate=validate.Length(max=320))


class SurveyAssign(StrictSchema):
    survey_id = fields.String(required=True, validate=_identifier)
    due_date = fields.Date(load_default=None, allow_none=True)


# Far enough for any calendar, and far from datetime's limits (weeks and months are computed around it).
_plausible_time = validate.Range(
    min=datetime(1970, 1, 1, tzinfo=UTC),
    max=datetime(9000, 1, 1, tzinfo=UTC),
    error="must be between {min} and {max}",
)


class AppointmentSchedule(StrictSchema):
    resource_id = fields.String(required=True, validate=_identifier)
    starts_at = fields.AwareDateTime(required=True, format="iso", validate=_plausible_time)
    duration_minutes = fields.Integer(strict=True, required=True, validate=validate.Range(5, 480))


class AppointmentCancel(StrictSchema):
    appointment_task_id = fields.String(required=True, validate=_task_id)


class MaintenanceSchedule(StrictSchema):
    vin = fields.String(
        required=True,
        validate=FullMatch(r"^[A-Za-z0-9]{17}$", error="must be 17 letters or digits"),
    )
    position = fields.String(required=True, validate=validate.Length(min=1, max=64))
    starts_at = fields.AwareDateTime(required=True, format="iso", validate=_plausible_time)
    duration_minutes = fields.Integer(strict=True, required=True, validate=validate.Range(5, 1440))
    appointment_task_id = fields.String(load_default=None, allow_none=True, validate=_task_id)


class VisitBook(StrictSchema):
    vin = fields.String(
        required=True,
        validate=FullMatch(r"^[A-Za-z0-9]{17}$", error="must be 17 letters or digits"),
    )
    resource_id = fields.String(required=True, validate=_identifier)
    position = fields.String(required=True, validate=validate.Length(min=1, max=64))
    starts_at = fields.AwareDateTime(required=True, format="iso", validate=_plausible_time)
    duration_minutes = fields.Integer(strict=True, required=True, validate=validate.Range(5, 480))


class VisitCancel(StrictSchema):
    visit_task_id = fields.String(required=True, validate=_task_id)


PAYLOAD_SCHEMAS: dict[str, type[Schema]] = {
    "customer.upsert": CustomerUpsert,
    "survey.assign": SurveyAssign,
    "appointment.schedule": AppointmentSchedule,
    "appointment.cancel": AppointmentCancel,
    "maintenance.schedule": MaintenanceSchedule,
    "visit.book": VisitBook,
    "visit.cancel": VisitCancel,
}


class TaskSubmission(StrictSchema):
    task_id = fields.String(required=True, validate=_task_id)
    type = fields.String(required=True, validate=validate.OneOf(sorted(PAYLOAD_SCHEMAS)))
    customer_id = fields.String(required=True, validate=_identifier)
    payload = fields.Dict(required=True)


# Schemas keep no state between calls, so one instance of each serves every request (building one
# deep-copies its fields, which cost more than validating a task).
_TASK_SUBMISSION = TaskSubmission()
_PAYLOADS = {task_type: schema() for task_type, schema in PAYLOAD_SCHEMAS.items()}


def validate_task(body: object) -> dict:
    """The task as submitted, checked field by field; raises ValidationError with dotted field names."""
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["the body must be a JSON object"]})
    errors = _TASK_SUBMISSION.validate(body)
    task_type = body.get("type")
    if "payload" not in errors and isinstance(task_type, str) and task_type in _PAYLOADS:
        payload_errors = _PAYLOADS[task_type].validate(body["payload"])
        if payload_errors:
            errors["payload"] = payload_errors
    if errors:
        raise ValidationError(flatten(errors))
    return body


MAX_NESTING = 32  # a task is a few levels deep; far deeper is an attack on the parsers' recursion


class TooDeep(ValueError):
    """A body nested deeper than MAX_NESTING."""


def unstorable_text(value: object) -> dict[str, list[str]]:
    """Where a parsed body holds text no database stores (NUL, or a lone surrogate), as 422 errors
    by the field's dotted path (a key's own text counts as its field's); raises TooDeep for a
    body nested deeper than MAX_NESTING. Walks the body without recursion."""
    errors: dict[str, list[str]] = {}
    pending = [(value, "", 1)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_NESTING:
                raise TooDeep(f"the body is nested deeper than {MAX_NESTING} levels")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                field = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _unstorable(key):
                    errors[path or "body"] = ["a key holds a NUL character or an unpaired surrogate"]
                    continue
                pending.append((child, field, depth + 1))
        elif isinstance(item, str) and _unstorable(item):
            errors[path or "body"] = ["holds a NUL character or an unpaired surrogate"]
    return errors


def _unstorable(text: str) -> bool:
    return "\x00" in text or (not text.isascii() and _has_surrogate(text))


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def flatten(errors: dict, prefix: str = "") -> dict[str, list[str]]:
    """{"payload": {"email": [...]}} -> {"payload.email": [...]}."""
    flat: dict[str, list[str]] = {}
    for key, value in errors.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = list(value)
    return flat


class Links(Schema):
    self = fields.String()


class Accepted(Schema):
    task_id = fields.String()
    task_uuid = fields.UUID()
    status = fields.String()
    links = fields.Nested(Links)


class Result(Schema):
    result_id = fields.UUID()
    context = fields.String()
    outcome = fields.String()
    status = fields.String()
    result = fields.Dict()
    occurred_at = fields.AwareDateTime()


class Delivery(Schema):
    result_id = fields.UUID()
    status = fields.String()
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    next_attempt_at = fields.AwareDateTime(allow_none=True)


class AttemptRecord(Schema):
    attempted_at = fields.AwareDateTime()
    duration_ms = fields.Integer()
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    response_body = fields.String(allow_none=True)


class DeliveryDetail(Delivery):
    task_id = fields.String()
    task_uuid = fields.UUID()
    context = fields.String()
    outcome = fields.String()
    last_error = fields.String(allow_none=True)
    delivered_at = fields.AwareDateTime(allow_none=True)
    attempt_log = fields.List(fields.Nested(AttemptRecord))


class Task(Schema):
    task_id = fields.String()
    task_uuid = fields.UUID()
    type = fields.String()
    customer_id = fields.String()
    status = fields.String()
    # Why a `waiting` task waits: unknown_customer, customer_outdated or target_undecided.
    waiting_reason = fields.String(allow_none=True)
    received_at = fields.AwareDateTime()
    results = fields.List(fields.Nested(Result))
    deliveries = fields.List(fields.Nested(Delivery))
    links = fields.Nested(Links)


class TimelineEvent(Schema):
    at = fields.AwareDateTime(allow_none=True)  # None when the time is not kept
    exact = fields.Boolean()  # False: `at` is the latest it can have happened
    kind = fields.String()  # received, routed, parked, step, result, attempt, delivered, failed, ...
    title = fields.String()
    detail = fields.String()
    status = fields.String(allow_none=True)
    data = fields.Dict(allow_none=True)


class Timeline(Schema):
    task_id = fields.String()
    task_uuid = fields.UUID()
    status = fields.String()
    events = fields.List(fields.Nested(TimelineEvent))


class PageLinks(Schema):
    self = fields.String()
    next = fields.String()


class TaskPage(Schema):
    items = fields.List(fields.Nested(Task))
    next_cursor = fields.String(allow_none=True)
    links = fields.Nested(PageLinks)


class Problem(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
