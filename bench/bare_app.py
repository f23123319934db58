"""The bare Flask stage: a webhook route that reads the body and answers 202, nothing else.

`gunicorn -c gunicorn.conf.py bench.bare_app:app` serves it like taskgate's split mode;
`python -m bench.bare_app PORT` serves it on waitress with 8 threads, like `taskgate serve`.
"""

from __future__ import annotations

import sys

from flask import Flask, request

app = Flask(__name__)


@app.post("/v1/clients/<client_id>/tasks")
def accept(client_id: str):
    request.get_data()
    return {"client_id": client_id, "status": "accepted"}, 202


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    from waitress import serve

    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=8, ident="bare")
