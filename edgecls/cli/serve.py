"""`edgecls serve` (the model as a local HTTP service) and `edgecls deploy` (push a model to running servers).

Importing this module imports no web framework: serve needs the `serve` extra (Starlette, uvicorn,
prometheus_client), loaded only when it runs; deploy needs nothing beyond the base install.
"""

from __future__ import annotations

import typer

from edgecls import jsonio
from edgecls.cli.common import Typer
from edgecls.cli.records import takes
from edgecls.serve.options import PANELS, DeployOptions, ServeOptions

app = Typer()

SERVE_EXAMPLES = (
    "Examples:\n\n"
    "edgecls serve model_int8.tflite\n\n"
    "curl --data-binary @seven.png -H 'Content-Type: image/png' 'localhost:8080/v1/classify?top_k=3'\n\n"
    "edgecls serve model.tflite --host 0.0.0.0 --token-file /etc/edgecls/token --interpreters 2 --threads 2\n\n"
    "edgecls serve mobilenet_v1_0.5_160_quant.tflite --labels imagenet_labels.txt --resize nearest --watch\n\n"
    "edgecls serve model.tflite --source camera:0 --fps 5 --on-change --mqtt mqtt://localhost/edgecls/feeder\n\n"
    "edgecls serve model.tflite --host 0.0.0.0 --token-file token --systemd-unit > edgecls.service\n\n"
    "edgecls serve model_int8.tflite --collect /var/lib/edgecls/inbox --collect-when 'unknown,uncertain<0.6' "
    "--collect-max-mb 500"
)


@app.command(epilog=SERVE_EXAMPLES)
@takes(ServeOptions, panels=PANELS)
def serve(options: ServeOptions) -> None:
    """Serve a .tflite classifier over HTTP: POST an image, get its classes as JSON.

    Routes: POST /v1/classify (an image as the body, or a multipart field 'image'; ?top_k=), GET and PUT /v1/model (the model, or a new one: checked, then swapped in without dropping a request), POST /v1/model/rollback, GET /healthz, /readyz, /metrics (Prometheus). Answers are predict's, with the SHA-256 of the model that gave them.

    Live mode (--source): a camera, video file or stream is classified continuously as well; each prediction goes to GET /v1/latest, the events (GET /v1/events, Server-Sent Events) and MQTT (--mqtt), with --on-change only the changes. A web page at / shows the model, classifies an uploaded image, and follows the live source.

    With --collect DIR, the answers a --collect-when rule picks are kept as predict --collect keeps them (uploads as they came). /metrics (and /v1/live) also track drift: the class mix of the last --drift-window answers against the training split's, the mean calibrated confidence and the unknown rate.

    Safe by default: 127.0.0.1 only unless --host; any other address needs a token. Bodies, pixels, read times, connections and the queue are capped (413, 408, 503 with Retry-After). SIGTERM drains, SIGHUP reloads the model. Needs pip install 'edgecls\\[serve]'.

    Exit codes: 0 stopped by SIGTERM after draining (or --systemd-unit printed); 2 it cannot start (a bad model, token, certificate or option, the port is taken, the serve extra is missing); 130 Ctrl-C.
    """  # noqa: E501  (one line a paragraph: Typer keeps a docstring's line breaks in --help)
    options = options.checked()
    from edgecls.serve import require_stack

    require_stack()  # a unit runs this environment's `edgecls serve`: without the extra it could never start
    if options.systemd_unit:
        from edgecls.serve.unit import systemd_unit as unit_text
        from edgecls.serve.unit import unit_warnings

        typer.echo(unit_text(options), nl=False)
        for warning in unit_warnings(options):
            typer.echo(f"edgecls: warning: {warning}", err=True)
        return
    from edgecls.serve.server import run

    code = run(options)
    if code:  # 130 after a Ctrl-C that drained cleanly: exit with it (typer.Exit(130) reads as an interruption)
        raise SystemExit(code)


DEPLOY_EXAMPLES = (
    "Examples:\n\n"
    "edgecls deploy runs/digits/export/model_int8.tflite --to http://pi:8080 --token-file token\n\n"
    "edgecls deploy model_int8.tflite --to pi-1,pi-2:9000,https://gate.local --parallel 8\n\n"
    "edgecls deploy model_int8.tflite --to @hosts.txt --json > deployed.jsonl"
)


@app.command(epilog=DEPLOY_EXAMPLES)
@takes(DeployOptions)
def deploy(options: DeployOptions) -> None:
    """Push a model to running `edgecls serve` servers; report each one's answer.

    Each server checks the model as it checks any new one (it loads, a test inference gives valid scores, its labels fit, its input is the served one's) and swaps it in without dropping a request, or refuses it with its reason and keeps serving the old one. One line per server as it answers: accepted, unchanged (already serving it), refused (the server's reason), unreachable, or failed.

    Exit codes: 0 every server took the model (or already had it); 1 any refused it, was unreachable or failed; 2 bad arguments (no such model, not a .tflite, a bad --to).
    """  # noqa: E501
    from edgecls.serve.deploy import deploy as push_all
    from edgecls.serve.deploy import deploy_token, report_line, servers, summary_line

    urls = servers(options)
    results = []
    for result in push_all(options.model, urls, deploy_token(options.token_file), parallel=options.parallel,
                           timeout=options.timeout):
        results.append(result)
        if options.as_json:

            typer.echo(jsonio.dumps(result.document(), ensure_ascii=False))
        else:
            typer.echo(report_line(result, width=max(len(url) for url in urls)))
    typer.echo(summary_line(results), err=True)
    raise typer.Exit(0 if all(result.ok for result in results) else 1)
