"""The bearer token of `edgecls serve`: where it comes from, when it is required, how it is compared.

The token is read from a file (`--token-file`) or the EDGECLS_TOKEN environment variable, never from
the command line (which `ps` shows to every user). A bind other than loopback requires one, unless
--insecure-no-auth (which then warns at every start). Requests carry it as `Authorization: Bearer TOKEN`
and it is compared with hmac.compare_digest (constant time).
"""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.files import read_capped
from edgecls.serve.options import TOKEN_ENV, ServeOptions

MIN_TOKEN_CHARS = 16
MAX_TOKEN_BYTES = 4096
MAKE_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > token && chmod 600 token"
# Answered without a token: a liveness probe knows no secrets, and the page at / holds no data (it asks
# for the token and fetches everything with it).
OPEN_ROUTES = frozenset({"/healthz", "/"})


class Auth:
    """Decides whether a request may pass: `allows(authorization_header)`."""

    def __init__(self, token: str | None):
        self._token = None if token is None else token.encode("utf-8")

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def allows(self, authorization: str | None) -> bool:
        """True without a configured token; else only for `Bearer <the token>` (constant-time comparison)."""
        if self._token is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            given = ""
        # compare_digest takes as long for a wrong first byte as for a wrong last one.
        return hmac.compare_digest(given.strip().encode("utf-8"), self._token)


def load_token(options: ServeOptions) -> tuple[str | None, list[str]]:
    """The token (None: no authentication) and the warnings to print at start; a one-line
    EdgeclsError when a non-loopback bind has none and --insecure-no-auth was not given."""
    warnings = []
    token = None
    if options.token_file is not None:
        token = read_token_file(options.token_file)
        mode = os.stat(options.token_file).st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(f"the token file {options.token_file} is readable by other users: chmod 600 it")
    elif os.environ.get(TOKEN_ENV):
        token = check_token(os.environ[TOKEN_ENV], f"${TOKEN_ENV}")
    if token is None and not options.loopback and not options.insecure_no_auth:
        raise EdgeclsError(f"--host {options.host} lets other machines in: give a token (--token-file FILE or "
                           f"${TOKEN_ENV}; make one with: {MAKE_TOKEN}), or pass --insecure-no-auth")
    if options.insecure_no_auth:
        warnings.append(f"--insecure-no-auth: anyone who can reach {options.host}:{options.port} can classify, "
                        "replace the model and read the metrics")
    return token, warnings


def read_token_file(path: Path) -> str:
    try:
        text = read_capped(path, MAX_TOKEN_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise EdgeclsError(f"token file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise EdgeclsError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    return check_token(text, f"token file {path}")


def check_token(text: str, where: str) -> str:
    token = text.strip()
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise EdgeclsError(f"{where}: a token is one word of at least {MIN_TOKEN_CHARS} characters "
                           f"(make one with: {MAKE_TOKEN})")
    return token
