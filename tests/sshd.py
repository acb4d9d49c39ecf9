"""Test helpers for `bench --remote`: a real, throw-away OpenSSH server on 127.0.0.1 and an offline
wheelhouse.

The server runs as the user running the tests (as root when the tests do: sshd can only log a
user in as itself when it is unprivileged), with its own host key, an authorized_keys for a
throw-away client key, and a client config file (`--ssh-config`) that trusts exactly that host key.

The wheelhouse repacks the installed distributions edgecls' device side needs as wheels (their
files and dist-info, as pip installed them), so a device venv can be made with `--wheels DIR`
and pip's --no-index: no network, and the device gets the very versions installed here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import zipfile
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

SSHD = "/usr/sbin/sshd"


def device_requirements() -> tuple[str, ...]:
    """The distributions a plain `pip install edgecls` installs here: edgecls' requirements without an
    extra, read from its installed metadata (pyproject.toml), so a new dependency reaches the device."""
    from packaging.requirements import Requirement

    found = []
    for text in metadata.requires("edgecls") or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found.append(requirement.name)
    return tuple(found)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (path.with_suffix(".pub") if path.suffix else Path(f"{path}.pub")).read_text().strip()


def start_sshd(folder: Path) -> SimpleNamespace:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    host_public = keygen(folder / "host_key")
    client_public = keygen(folder / "client_key")
    (folder / "authorized_keys").write_text(client_public + "\n")
    (folder / "authorized_keys").chmod(0o600)
    port = free_port()
    user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
    (folder / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {folder}/host_key
AuthorizedKeysFile {folder}/authorized_keys
PidFile {folder}/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
LogLevel ERROR
""")
    (folder / "known_hosts").write_text(f"edgecls-test {host_public}\n")
    write_client_config(folder / "ssh_config", folder / "known_hosts", port, user, folder / "client_key")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    log = open(folder / "sshd.log", "wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            raise RuntimeError(f"sshd did not start: {(folder / 'sshd.log').read_text()}")
        time.sleep(0.05)
    return SimpleNamespace(proc=proc, port=port, user=user, folder=folder, config=folder / "ssh_config",
                           known_hosts=folder / "known_hosts", host="edgecls-test")


def write_client_config(path: Path, known_hosts: Path, port: int, user: str, key: Path) -> None:
    path.write_text(f"""Host edgecls-test
  HostName 127.0.0.1
  Port {port}
  User {user}
  IdentityFile {key}
  IdentitiesOnly yes
  HostKeyAlias edgecls-test
  UserKnownHostsFile {known_hosts}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  LogLevel ERROR
""")


def descendants(pid: int) -> list[int]:
    """The processes started by `pid` (sshd's per-connection children and what they run)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_server(server: SimpleNamespace) -> None:
    """sshd and every session it started, by process id."""
    for pid in [server.proc.pid, *descendants(server.proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.wait(timeout=10)


# ---------------------------------------------------------------------- offline wheels
def _requirements(name: str, seen: dict[str, metadata.Distribution]) -> None:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return
    dist = metadata.distribution(name)
    seen[key] = dist
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({**default_environment(), "extra": ""}):
            continue
        _requirements(requirement.name, seen)


def repack_wheels(folder: Path, names: tuple[str, ...] | None = None) -> Path:
    """Wheels of the installed distributions `names` (default: edgecls' own requirements) need
    (recursively), in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    names = device_requirements() if names is None else names
    found: dict[str, metadata.Distribution] = {}
    for name in names:
        _requirements(name, found)
    for dist in found.values():
        files = [f for f in dist.files or [] if ".." not in Path(str(f)).parts and "__pycache__" not in str(f)]
        info = next(f for f in files if str(f).endswith(".dist-info/WHEEL"))
        tags = [line.split(":", 1)[1].strip() for line in Path(dist.locate_file(info)).read_text().splitlines()
                if line.startswith("Tag:")]
        project = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
        parts = [sorted({t.split("-")[i] for t in tags}) for i in range(3)] if tags else [["py3"], ["none"], ["any"]]
        target = folder / f"{project}-{dist.version}-{'-'.join('.'.join(p) for p in parts)}.whl"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
            for f in files:
                path = Path(dist.locate_file(f))
                if path.is_file():
                    archive.write(path, str(f))
    return folder


def has_sshd() -> bool:
    return Path(SSHD).is_file() and shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None
