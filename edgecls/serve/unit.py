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
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.options import argv
from edgecls.serve.options import TOKEN_ENV, ServeOptions

UNIT_USER = "edgecls"
CREDENTIAL = "edgecls-token"  # the token file's name in the service's credentials folder (%d)
PRIVILEGED_PORTS = 1024
STOP_MARGIN_S = 5  # systemd's stop timeout: the drain (--grace-s) and this much to spare
MQTT_CREDENTIAL = "edgecls-mqtt"  # the MQTT credentials file's name in the credentials folder


def edgecls_command() -> list[str]:
    """This environment's `edgecls`, absolute (the venv's console script, else `python -m edgecls`).
    sys.executable is not resolved: a venv's python is a link out of the venv."""
    python = Path(os.path.abspath(sys.executable))
    script = python.parent / "edgecls"
    return [str(script)] if script.is_file() else [str(python), "-m", "edgecls"]


def serve_arguments(options: ServeOptions) -> list[str]:
    """`serve MODEL ...`: the options that differ from the defaults (paths absolute), without the token or the
    MQTT credentials, made from the records' own fields (edgecls.options.argv)."""
    own = ("token_file", "systemd_unit")  # the token is handed over as a credential; the unit is this output
    words = ["serve", str(options.model), *argv(options.settings), *argv(options, skip=lambda f: f.name in own),
             *argv(options.collecting)]
    if options.live is not None:
        words += argv(options.live, value_of=lambda f, value: live_source(value) if f.name == "source" else value)
    if options.mqtt is not None:  # its credentials file is handed over as a credential too
        words += argv(options.mqtt, skip=lambda f: f.name == "credentials_file")
    return words


def live_source(source: str) -> str:
    """--source as the service must get it: a video file's path made absolute (a unit runs in /)."""
    if source == "camera" or source.startswith("camera:") or "://" in source:
        return source
    return str(Path(source).absolute())


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
        if _under(folder, "/tmp", "/var/tmp"):
            found.append(f"the service has a private /tmp (PrivateTmp=yes) and will not see {folder}: put {what} in "
                         "a folder of its own, e.g. /var/lib/edgecls")
    if _under(options.model.parent, "/home", "/root"):
        found.append(f"the install steps give {options.model.parent} (all of it) to user {UNIT_USER}, and the service "
                     "writes there; a home folder is no place for that (and is private on recent Raspberry Pi OS): "
                     "put the model in e.g. /var/lib/edgecls and make the unit from there")
    source = None if options.live is None else live_source(options.live.source)
    if source is not None and source.startswith("/") and _under(Path(source).parent, "/tmp", "/var/tmp"):
        found.append(f"the service will not see the --source video {source} in its private /tmp: move it")
    executable = Path(edgecls_command()[0])
    if _under(executable.parent, "/tmp", "/var/tmp"):
        found.append(f"the service will not see {executable} in its private /tmp: make the venv in e.g. "
                     "/opt/edgecls/venv")
    elif _under(executable.parent, "/home"):
        found.append(f"the service runs as user {UNIT_USER}, which may not read {executable.parent} (home folders "
                     "are private on recent Raspberry Pi OS): make the venv in e.g. /opt/edgecls/venv")
    return found


def _under(folder: Path, *roots: str) -> bool:
    """`folder` is one of `roots` or inside one."""
    return any(folder == Path(root) or Path(root) in folder.parents for root in roots)


def _quoted(arg: str, keep_specifiers: bool = False) -> str:
    """One argument as systemd reads it back: % and $ doubled (specifiers, variables), quotes and
    backslashes escaped, and double quotes around it when it holds a space."""
    text = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    if not keep_specifiers:
        text = text.replace("%", "%%")
    return f'"{text}"' if any(c.isspace() for c in text) or not text else text
