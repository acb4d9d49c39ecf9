"""The web page at `/`: the model card, an upload box with a bar per class, and in live mode the newest
frame and its label, updated from GET /v1/events. One file (page.html), its CSS and JavaScript inline: no
CDN, nothing fetched but the API itself.

The page holds no data: it is served without the token and fetches everything from the API with it.
The token is typed into a sign-in form, kept in the tab's sessionStorage and sent as the Authorization
header by fetch — the events too, read from a fetch stream, since EventSource cannot send headers. No
cookie carries it, so the browser never attaches it to a request another site makes (no CSRF to defend),
and no URL holds it (server logs, history, Referer). Content-Security-Policy allows only the page's own
inline script and style (by their SHA-256), requests to this origin, and frame images as blob: URLs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

PAGE_PATH = "/"
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)


def page_html() -> str:
    return files("edgecls.serve").joinpath("page.html").read_text(encoding="utf-8")


def content_security_policy(html: str) -> str:
    """A policy that lets exactly the page's inline <script> and <style> blocks run (by hash) and nothing else."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    return "; ".join([
        "default-src 'none'", f"script-src {' '.join(hashes['script'])}", f"style-src {' '.join(hashes['style'])}",
        "img-src 'self' blob: data:", "connect-src 'self'", "base-uri 'none'", "form-action 'none'",
        "frame-ancestors 'none'"])


def page_route() -> Route:
    html = page_html()
    headers = {"Content-Security-Policy": content_security_policy(html), "X-Content-Type-Options": "nosniff",
               "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}

    async def page(request: Request) -> Response:
        return HTMLResponse(html, headers=headers)

    return Route(PAGE_PATH, page, methods=["GET"])
