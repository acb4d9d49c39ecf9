"""`edgecls serve ... --systemd-unit`: the systemd unit that runs that very command as a service.

ExecStart is this venv's own `edgecls` (absolute) with the command's options and absolute paths; the
service runs as a dedicated user, restarts on failure, reloads the model on `systemctl reload`
(SIGHUP), stops with SIGTERM's drain, and is hardened: no new privileges, the whole file system
read-only (ProtectSystem=strict) but for the model's folder (where deployed models are written) and
the --collect folder,
private /tmp, no capabilities, kernel and control groups protected; the `video` group for cameras.
A token file (and an MQTT credentials file) is handed over with LoadCredential (it may stay root-only;
the service reads its copy).
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.serve.options import TOKEN_ENV, LiveOptions, ModelSettings, ServeOptions

UNIT_USER = "edgecls"
CREDENTIAL = "edgecls-token"  # the token file's name in the service's credentials folder (%d)
PRIVILEGED_PORTS = 1024
STOP_MARGIN_S = 5  # systemd's stop timeout: the drain (--grace-s) and this much to spare
# ServeOptions field -> its flag; flags whose value equals the default are left out of ExecStart.
_FLAGS = {
    "host": "--host", "port": "--port", "interpreters": "--interpreters", "queue": "--queue",
    "insecure_no_auth": "--insecure-no-auth", "metrics_public": "--metrics-public",
    "max_body_mb": "--max-body-mb", "max_model_mb": "--max-model-mb", "max_megapixels": "--max-megapixels",
    "header_timeout_s": "--header-timeout-s", "body_timeout_s": "--body-timeout-s",
    "max_connections": "--max-connections", "grace_s": "--grace-s", "watch": "--watch",
    "allow_input_change": "--allow-input-change", "tls_cert": "--tls-cert", "tls_key": "--tls-key",
    "access_log": "--access-log", "drift_window": "--drift-window",
}
_COLLECT_FLAGS = {"folder": "--collect", "max_mb": "--collect-max-mb", "reserve_mb": "--collect-reserve-mb",
                  "shadow": "--shadow", "shadow_every": "--shadow-every"}
_SETTING_FLAGS = {"labels": "--labels", "resize": "--resize", "fit": "--fit", "input_range": "--input-range",
                  "threads": "--threads", "backend": "--backend"}
_LIVE_FLAGS = {"every": "--every", "fps": "--fps", "top_k": "--top-k", "on_change": "--on-change",
               "min_stable": "--min-stable", "loop": "--loop", "capture": "--capture", "timeout": "--timeout",
               "reconnect": "--reconnect", "frame_max_side": "--frame-max-side"}
MQTT_CREDENTIAL = "edgecls-mqtt"  # the MQTT credentials file's name in the credentials folder


def edgecls_command() -> list[str]:
    """This environment's `edgecls`, absolute (the venv's console script, else `python -m edgecls`).
    sys.executable is not resolved: a venv's python is a link out of the venv."""
    python = Path(os.path.abspath(sys.executable))
    script = python.parent / "edgecls"
    return [str(script)] if script.is_file() else [str(python), "-m", "edgecls"]


def serve_arguments(options: ServeOptions) -> list[str]:
    """`serve MODEL ...`: the options that differ from the defaults (paths absolute), without the token."""
    arguments = ["serve", str(options.model)]
    defaults, settings_defaults = ServeOptions(model=options.model), ModelSettings()
    for name, flag in _SETTING_FLAGS.items():
        value = getattr(options.settings, name)
        if value != getattr(settings_defaults, name):
            arguments += _flag(flag, value)
    for field in fields(ServeOptions):
        flag = _FLAGS.get(field.name)
        value = getattr(options, field.name)
        if flag is not None and value != getattr(defaults, field.name):
            arguments += _flag(flag, value)
    if options.collect is not None:
        for name, flag in _COLLECT_FLAGS.items():
            value = getattr(options.collect, name)
            if value is not None:
                arguments += _flag(flag, value)
        for rules in options.collect.when:
            arguments += ["--collect-when", rules]
    if options.live is not None:
        arguments += ["--source", live_source(options.live.source)]
        live_defaults = LiveOptions(source=options.live.source)
        for name, flag in _LIVE_FLAGS.items():
            value = getattr(options.live, name)
            if value != getattr(live_defaults, name):
                arguments += _flag(flag, value)
    if options.mqtt is not None:
        arguments += ["--mqtt", options.mqtt.url] + ([] if options.mqtt.ca_file is None else
                                                     ["--mqtt-ca", str(options.mqtt.ca_file)])
    return arguments


def live_source(source: str) -> str:
    """--source as the service must get it: a video file's path made absolute (a unit runs in /)."""
    if source == "camera" or source.startswith("camera:") or "://" in source:
        return source
    return str(Path(source).absolute())


def _flag(flag: str, value: object) -> list[str]:
    if value is True:
        return [flag]
    if isinstance(value, tuple):  # --input-range
        return [flag, ",".join(f"{v:g}" for v in value)]
    if isinstance(value, float):
        return [flag, f"{value:g}"]
    return [flag, str(value)]


def systemd_unit(options: ServeOptions) -> str:
    """The unit file's text for `options` (checked: absolute paths)."""
    if options.token_file is None and not options.loopback and not options.insecure_no_auth:
        raise EdgeclsError(f"--host {options.host} in a unit needs --token-file FILE (a unit file never holds the "
                           f"token itself, and ${TOKEN_ENV} is not carried over)")
    command = [*edgecls_command(), *serve_arguments(options)]
    credentials = []
    if options.token_file is not None:
        command += ["--token-file", f"%d/{CREDENTIAL}"]
        credentials.append(f"LoadCredential={CREDENTIAL}:{_quoted(str(options.token_file))}")
    if options.mqtt is not None and options.mqtt.credentials_file is not None:
        command += ["--mqtt-credentials", f"%d/{MQTT_CREDENTIAL}"]
        credentials.append(f"LoadCredential={MQTT_CREDENTIAL}:{_quoted(str(options.mqtt.credentials_file))}")
    folder = options.model.parent
    privileged = 0 < options.port < PRIVILEGED_PORTS
    capabilities = ["AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"] \
        if privileged else ["CapabilityBoundingSet="]
    shown = " ".join(["edgecls", *serve_arguments(options)[:2], "..."])
    lines = [
        f"# Made by: {shown} --systemd-unit",
        "# Install it (devices/README.md, \"Run it as a service\"):",
        f"#   sudo useradd --system --no-create-home --shell /usr/sbin/nologin {UNIT_USER}",
        f"#   sudo chown -R {UNIT_USER}: {_quoted(str(folder))}",
        *([f"#   sudo mkdir -p {_quoted(options.collect.folder)} && sudo chown -R {UNIT_USER}: "
           f"{_quoted(options.collect.folder)}"] if options.collect is not None else []),
        "#   sudo tee /etc/systemd/system/edgecls.service < this-file",
        "#   sudo systemctl daemon-reload && sudo systemctl enable --now edgecls",
        "[Unit]",
        f"Description=edgecls serve: the image classifier {options.model.name} over HTTP",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"User={UNIT_USER}",
        f"Group={UNIT_USER}",
        "SupplementaryGroups=video",  # cameras (/dev/video*) for a live source
        "ExecStart=" + " ".join(_quoted(arg, keep_specifiers=arg.startswith("%d/")) for arg in command),
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=2",
        f"TimeoutStopSec={int(options.grace_s) + STOP_MARGIN_S}",
        *credentials,
        "Environment=PYTHONUNBUFFERED=1",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={_quoted(str(folder))}",  # uploads and NAME.previous.tflite are written there
        *([f"ReadWritePaths={_quoted(options.collect.folder)}"] if options.collect is not None else []),
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        *capabilities,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def unit_warnings(options: ServeOptions) -> list[str]:
    """What would keep the unit from working as written: paths the service's sandbox or user cannot reach."""
    found = []
    folders = [(options.model.parent, "the model"),
               *([(Path(options.collect.folder), "--collect")] if options.collect is not None else [])]
    for folder, what in folders:
        if any(folder == Path(tmp) or Path(tmp) in folder.parents for tmp in ("/tmp", "/var/tmp")):
            found.append(f"the service has a private /tmp (PrivateTmp=yes) and will not see {folder}: put {what} in "
                         "a folder of its own, e.g. /var/lib/edgecls")
    source = None if options.live is None else live_source(options.live.source)
    if source is not None and source.startswith("/") and any(
            Path(source).parent == Path(tmp) or Path(tmp) in Path(source).parents for tmp in ("/tmp", "/var/tmp")):
        found.append(f"the service will not see the --source video {source} in its private /tmp: move it")
    executable = Path(edgecls_command()[0])
    if Path("/home") in executable.parents:
        found.append(f"the service runs as user {UNIT_USER}, which may not read {executable.parent} (home folders "
                     "are private on recent Raspberry Pi OS): make the venv in e.g. /opt/edgecls/venv")
    return found


def _quoted(arg: str, keep_specifiers: bool = False) -> str:
    """One argument as systemd reads it back: % and $ doubled (specifiers, variables), quotes and
    backslashes escaped, and double quotes around it when it holds a space."""
    text = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    if not keep_specifiers:
        text = text.replace("%", "%%")
    return f'"{text}"' if any(c.isspace() for c in text) or not text else text
