"""`edgecls serve` and `edgecls deploy`: the model as a local HTTP service on the device, updated without downtime.

The service wraps the same Classifier and preprocessing as `edgecls predict` (so both give the same
answers); it needs the `serve` extra (Starlette, uvicorn, prometheus_client, python-multipart; paho-mqtt
for --mqtt), which the base install never imports. One concern a module:

- options   ServeOptions: every setting of `edgecls serve`, checked in one place (stdlib only)
- auth      the bearer token: where it comes from, when it is required, compared in constant time
- limits    caps on bodies, decoded pixels and read time; what content types are images
- metrics   the one prometheus_client registry and its instruments
- pool      N interpreter threads behind a bounded queue (a full queue is answered at once)
- models    the served model: loaded, checked, swapped atomically, the previous one kept for rollback
- service   what the routes (and a live loop) share: the options, pool, models, metrics, auth
- app       the Starlette app and its routes (create_app; routes can be added)
- page      the web page at / (page.html: the model card, an upload box, the live view)
- live      --source: the live loop on the interpreter pool, its routes and metrics
- events    the live prediction's document (prediction.schema.json), the change rule, Server-Sent Events
- mqtt      --mqtt: the publisher (status and last will, drop while the broker is away)
- protocol  uvicorn's HTTP/1.1 protocol with a deadline for the request head and a connection cap
- server    run(): the socket, uvicorn, SIGTERM drain, SIGHUP reload, --watch
- unit      the systemd unit text of a serve command line
- deploy    the client side of `edgecls deploy` (stdlib HTTP: deploying needs no extra)
"""

from __future__ import annotations

from edgecls.errors import EdgeclsError

# The import name of each package of the serve extra, and its distribution (for the message).
STACK = {"starlette": "starlette", "uvicorn": "uvicorn", "prometheus_client": "prometheus-client",
         "python_multipart": "python-multipart"}
INSTALL = "pip install 'edgecls[serve]'"


def require_stack() -> None:
    """Raise a one-line EdgeclsError naming the pip command unless the serve extra is importable."""
    missing = []
    for module, distribution in STACK.items():
        try:
            __import__(module)
        except ImportError:
            missing.append(distribution)
    if missing:
        raise EdgeclsError(f"edgecls serve needs the serve extra, which is not installed here: {INSTALL} "
                           f"(missing: {', '.join(missing)})")
