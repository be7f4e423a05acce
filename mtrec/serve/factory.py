"""The app factory uvicorn workers call (settings from the environment ``mtrec serve`` set)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from mtrec.serve.app import ServeSettings, create_app


def app_from_env() -> FastAPI:
    store = os.environ.get("MTREC_SERVE_STORE") or None
    return create_app(ServeSettings.from_env(), os.environ["MTREC_SERVE_BUNDLE"], store)
