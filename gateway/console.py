"""The operator console at /console: health and backlogs at a glance, recent tasks, one task's
timeline, failed deliveries with a retry button, parked tasks. Server-rendered.

It exists only when TASKGATE_OPERATOR_TOKEN is set (404 otherwise). A browser signs in once with the
token and gets a cookie holding an expiry and an HMAC keyed by the token (never the token itself);
scripts send `Authorization: Bearer <token>`. A cookie-authenticated POST must come from this host
(Origin/Referer) and carry the session's CSRF token; the cookie is also SameSite=Strict.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound

from gateway.clients import list_clients
from gateway.console_format import age, clock, duration
from gateway.console_query import overview_filter
from gateway.console_session import (
    COOKIE,
    SESSION_SECONDS,
    csrf_token,
    equal,
    form_from_console,
    inside,
    same_origin,
    session_cookie,
    session_valid,
)
from gateway.deliveries import STATUSES as DELIVERY_STATUSES
from gateway.deliveries import list_deliveries, replay
from gateway.overview import read_overview
from gateway.problems import Problem, problem_response
from gateway.state import current_state
from gateway.tables import results, tasks
from gateway.tasks import TASK_STATUSES
from gateway.timeline import parked_tasks, recent_tasks, task_timeline
from messaging.db import is_unavailable, utcnow

log = logging.getLogger(__name__)

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


NOTICES = {
    "retried": "Retried: the delivery was put back in line and goes out again with the same webhook-id.",
    "not-retried": "That delivery is already pending; it was left as it is.",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# --- access ---------------------------------------------------------------------------------------


def _throttled():
    """A 429 page while this source has failed to sign in too often, else None."""
    wait = current_state().console_failures.wait_seconds(request.remote_addr or "-")
    if wait is None:
        return None
    page, status = _page(
        "console/error.html", 429, title="Too many tries", message="Too many failed sign-ins; wait a while."
    )
    return page, status, {"Retry-After": str(wait)}


@bp.before_request
def _guard():
    token = current_state().settings.operator_token
    if not token:  # no console at all: the same answer as any unknown URL
        return problem_response(Problem(404, NotFound.description))
    g.console_token = token
    g.csrf_token = None
    if request.endpoint in ("console.login", "console.static"):
        return None

    # A script sends the token as a bearer; another scheme (a proxy's Basic authentication in
    # front of the console, say) is not addressed to the console, which then looks for its cookie.
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        if refused := _throttled():
            return refused
        if not equal(given.strip(), token):
            current_state().console_failures.hit(request.remote_addr or "-")
            return _page(
                "console/error.html", 401, title="Not signed in", message="The bearer token is wrong."
            )
        g.signed_in = True
        return None  # a script: no ambient credentials, so nothing to forge

    session_value = request.cookies.get(COOKIE, "")
    if not session_valid(token, session_value, time.time()):
        if request.method == "GET":
            return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
        return _page("console/error.html", 401, title="Not signed in", message="Sign in again, then retry.")
    g.signed_in = True
    g.csrf_token = csrf_token(token, session_value)
    if request.method == "POST" and not form_from_console(g.csrf_token):
        log.warning("console request refused: cross-site or without its CSRF token")
        return _page(
            "console/error.html", 403, title="Refused", message="This form did not come from the console."
        )
    return None


@bp.after_request
def _secure(response):
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    token = g.console_token
    next_url = inside(request.values.get("next"), bp.url_prefix) or url_for("console.overview")
    if request.method == "GET":
        if session_valid(token, request.cookies.get(COOKIE, ""), time.time()):
            return redirect(next_url)
        return render_template("console/login.html", next=next_url)
    if not same_origin():
        return _page(
            "console/error.html", 403, title="Refused", message="Sign in from the console's own page."
        )
    if refused := _throttled():
        return refused
    if not equal(request.form.get("token", ""), token):
        current_state().console_failures.hit(request.remote_addr or "-")
        log.warning("console sign-in refused: wrong operator token")
        return _page("console/login.html", 401, next=next_url, error="That is not the operator token.")
    response = redirect(next_url, 303)
    response.set_cookie(
        COOKIE,
        session_cookie(token, time.time()),
        max_age=SESSION_SECONDS,
        path=bp.url_prefix,
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


@bp.post("/logout")
def logout():
    response = redirect(url_for("console.login"), 303)
    response.delete_cookie(
        COOKIE, path=bp.url_prefix, secure=request.is_secure, httponly=True, samesite="Strict"
    )
    return response


# --- pages ----------------------------------------------------------------------------------------


@bp.get("/")
def overview():
    task_filter = overview_filter(request.args)
    state = current_state()
    with state.reader.connect() as connection:
        summary = read_overview(connection, state.overview_sources)
    with Session(state.reader) as session:
        recent = recent_tasks(session, task_filter)
        clients = [client["client_id"] for client in list_clients(session)]
    return render_template(
        "console/overview.html",
        summary=summary,
        broker_up=state.broker_probe.is_up(),
        recent=recent,
        clients=clients,
        task_filter=task_filter,
        task_statuses=TASK_STATUSES,
    )


@bp.get("/tasks/<task_uuid>")
def task(task_uuid: str):
    with Session(current_state().reader) as session:
        timeline = task_timeline(session, _uuid_or_404(task_uuid))
    if timeline is None:
        abort(404)
    return render_template(
        "console/task.html", timeline=timeline, notice=NOTICES.get(request.args.get("notice", ""))
    )


@bp.get("/deliveries")
def deliveries():
    status = request.args.get("status")
    status = status if status in DELIVERY_STATUSES else "failed"
    with Session(current_state().reader) as session:
        rows = list_deliveries(session, status=status, limit=200)
    return render_template(
        "console/deliveries.html", deliveries=rows, status=status, statuses=DELIVERY_STATUSES
    )


@bp.post("/deliveries/<result_id>/retry")
def retry(result_id: str):
    """Put one delivery back in line (gateway.deliveries.replay), then show its task."""
    result_uuid = _uuid_or_404(result_id)
    with Session(current_state().engine) as session, session.begin():
        owner = session.execute(
            select(tasks.c.task_uuid, tasks.c.task_id)
            .join(results, results.c.task_uuid == tasks.c.task_uuid)
            .where(results.c.result_id == result_uuid)
        ).one_or_none()
        if owner is None:
            abort(404)
        replayed = replay(session, result_id=result_uuid)
    if replayed:
        log.info(
            "delivery %s retried from the console",
            result_uuid,
            extra={
                "task_id": owner.task_id,
                "task_uuid": str(owner.task_uuid),
                "result_id": str(result_uuid),
            },
        )
    notice = "retried" if replayed else "not-retried"
    return redirect(url_for("console.task", task_uuid=owner.task_uuid, notice=notice), 303)


@bp.get("/parked")
def parked():
    with Session(current_state().reader) as session:
        rows = parked_tasks(session)
    return render_template("console/parked.html", parked=rows)


# --- errors and helpers ---------------------------------------------------------------------------


@bp.errorhandler(NotFound)
def _not_found(error):
    return _page("console/error.html", 404, title="Not found", message="There is nothing at this address.")


@bp.errorhandler(SQLAlchemyError)
def _storage_error(error):
    if is_unavailable(error):
        log.warning("console: storage unavailable: %s", type(error).__name__)
        return _page(
            "console/error.html", 503, title="Database unavailable", message="The database does not answer."
        )
    log.exception("console: storage error")
    return _page("console/error.html", 500, title="Internal error", message="See the gateway's log.")


def _page(template: str, status: int, **context):
    return render_template(template, **context), status


def _uuid_or_404(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        abort(404)


@bp.context_processor
def _helpers():
    return {
        "csrf_token": g.get("csrf_token"),
        "now": utcnow(),
        "clock": clock,
        "age": age,
        "duration": duration,
        "signed_in": g.get("signed_in", False),
        "as_json": lambda value: json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str),
    }
