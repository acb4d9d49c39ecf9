"""The client side of `edgecls deploy MODEL --to URL,...`: push a model to running servers, host by host.

Each server checks the model as it checks any new one (PUT /v1/model) and answers accepted (now
serving it), unchanged (it already was), or refused with its reason; a server that cannot be reached
is unreachable. Standard library HTTP only: deploying needs no extra on the workstation.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecls.errors import EdgeclsError, first_line
from edgecls.options import check
from edgecls.parsing import split_list
from edgecls.provenance import sha256_bytes
from edgecls.runtime.model import read_model_bytes
from edgecls.serve.auth import read_token_file
from edgecls.serve.options import DEFAULT_DEPLOY_TIMEOUT_S, DEFAULT_PORT, TOKEN_ENV, DeployOptions
from edgecls.transport.fleet import DEFAULT_PARALLEL, as_finished, check_parallel

MAX_HOSTS_FILE_BYTES = 1 << 20
MAX_ANSWER_BYTES = 1 << 20
OK_OUTCOMES = ("accepted", "unchanged")


@dataclass(frozen=True)
class DeployResult:
    """One host's answer: accepted, unchanged, refused (the device's reason), unreachable or failed."""

    url: str
    outcome: str
    detail: str = ""
    sha256: str | None = None
    previous_sha256: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in OK_OUTCOMES

    def document(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def servers(options: DeployOptions) -> list[str]:
    """The servers `edgecls deploy --to` names, after every option's check; one-line EdgeclsError otherwise."""
    check(options)
    return parse_targets(options.to)


def parse_targets(text: str) -> list[str]:
    """Server URLs from `--to`: a comma list, and/or @FILE (one or more a line, # comments). A bare
    host or host:port means http://host:8080 (serve's default port)."""
    found: list[str] = []
    for part in split_list(text):
        if part.startswith("@"):
            found += _hosts_file(Path(part[1:]))
        else:
            found.append(part)
    urls = list(dict.fromkeys(server_url(target) for target in found))
    if not urls:
        raise EdgeclsError(f"--to names no server: give URLs (http://pi:{DEFAULT_PORT}) separated by commas, "
                           "or @hosts.txt")
    return urls


def _hosts_file(path: Path) -> list[str]:
    from edgecls.files import read_capped

    try:
        text = read_capped(path, MAX_HOSTS_FILE_BYTES).decode("utf-8", "replace")
    except OSError as exc:
        raise EdgeclsError(f"--to @{path}: {exc.strerror or exc}") from None
    return [target for line in text.splitlines() for target in split_list(line.split("#", 1)[0])]


def server_url(target: str) -> str:
    """'pi' -> 'http://pi:8080'; 'pi:9000' -> 'http://pi:9000'; a URL is kept (without a trailing /)."""
    text = target.strip()
    if "://" not in text:
        text = f"http://{text}" + ("" if _has_port(text) else f":{DEFAULT_PORT}")
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise EdgeclsError(f"--to: {target!r} is not a server address (http://host:port or host[:port])")
    if parsed.query or parsed.fragment:
        raise EdgeclsError(f"--to: {target!r}: a server address has no ?query or #fragment")
    try:
        parsed.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise EdgeclsError(f"--to: {target!r} has a bad port") from None
    return text.rstrip("/")


def _has_port(host: str) -> bool:
    if host.startswith("["):  # [::1]:8080
        return "]:" in host
    return host.count(":") == 1


def deploy_token(token_file: Path | None) -> str | None:
    """The token sent to every server: --token-file, else $EDGECLS_TOKEN, else none."""
    if token_file is not None:
        return read_token_file(token_file)
    return os.environ.get(TOKEN_ENV, "").strip() or None


def deploy(model: Path, urls: list[str], token: str | None, parallel: int = DEFAULT_PARALLEL,
           timeout: float = DEFAULT_DEPLOY_TIMEOUT_S) -> Iterator[DeployResult]:
    """Push `model` to every server, `parallel` at a time: a DeployResult per host as each finishes.
    A model that is not a readable .tflite is a one-line EdgeclsError before anything is sent."""
    check_parallel(parallel)
    content = read_model_bytes(Path(model))
    sha = sha256_bytes(content)
    for _, result in as_finished(urls, lambda url: push(url, content, sha, token, timeout), parallel):
        yield result


def push(url: str, content: bytes, sha: str, token: str | None, timeout: float) -> DeployResult:
    """PUT the model to one server; never raises (an unreachable host is a result too)."""
    started = time.perf_counter()
    headers = {"Content-Type": "application/octet-stream", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port, timeout=timeout)
    try:
        try:
            connection.request("PUT", f"{parts.path}/v1/model", body=content, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before the whole model was sent (a wrong token, over its cap): read that
        response = connection.getresponse()
        status, body = response.status, response.read(MAX_ANSWER_BYTES)
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        return DeployResult(url, "unreachable", _reason(exc), seconds=time.perf_counter() - started)
    finally:
        connection.close()
    return _result(url, status, body, sha, time.perf_counter() - started)


def _reason(reason: Any) -> str:
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed: {reason.verify_message or first_line(reason)}"
    if isinstance(reason, socket.gaierror):
        return f"the host name does not resolve ({reason.strerror})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return first_line(reason) if isinstance(reason, BaseException) else str(reason)


def _result(url: str, status: int, body: bytes, sha: str, seconds: float) -> DeployResult:
    try:
        answer = json.loads(body)
        if not isinstance(answer, dict):
            raise ValueError
    except ValueError:
        return DeployResult(url, "failed", f"HTTP {status} with no JSON answer: is this an edgecls server?",
                            seconds=seconds)
    outcome = answer.get("outcome")
    if status == 200 and outcome in OK_OUTCOMES:
        if answer.get("sha256") != sha:
            return DeployResult(url, "failed", f"the server says it serves sha256 {str(answer.get('sha256'))[:12]}, "
                                f"not the deployed {sha[:12]}", seconds=seconds)
        return DeployResult(url, outcome, "", sha, answer.get("previous_sha256"), seconds)
    reason = str(answer.get("reason") or answer.get("error") or f"HTTP {status}")
    if status == 401:
        reason = f"{reason.split(':')[0]}: give this server's token (--token-file, or ${TOKEN_ENV})"
    kind = "failed" if status >= 500 and outcome != "refused" else "refused"
    return DeployResult(url, kind, f"{reason} (HTTP {status})", answer.get("sha256"), answer.get("previous_sha256"),
                        seconds)


def report_line(result: DeployResult, width: int = 0) -> str:
    """'http://pi:8080  accepted     sha256 1a2b3c4d5e6f (was 9f8e7d6c5b4a), 0.84 s' and the like."""
    if result.outcome == "accepted":
        detail = f"sha256 {result.sha256[:12]}" + (f" (was {result.previous_sha256[:12]})"
                                                  if result.previous_sha256 else "")
    elif result.outcome == "unchanged":
        detail = f"sha256 {result.sha256[:12]}: already serving it"
    else:
        detail = result.detail
    return f"{result.url:<{width}}  {result.outcome:<11}  {detail}, {result.seconds:.2f} s"


def summary_line(results: list[DeployResult]) -> str:
    """'edgecls: the model is served by 2 of 3 servers (1 unreachable)'."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    good = sum(counts.get(outcome, 0) for outcome in OK_OUTCOMES)
    bad = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if outcome not in OK_OUTCOMES)
    return f"edgecls: the model is served by {good} of {len(results)} server{'s' if len(results) != 1 else ''}" + \
        (f" ({bad})" if bad else "")
