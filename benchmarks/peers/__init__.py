"""The peers mtrec is compared with, each in its own virtualenv under ``.mtrec/peers``.

A runner script here (``*_runner.py``) runs inside its peer's virtualenv and imports only
that peer's packages and numpy: it never imports mtrec.
"""
