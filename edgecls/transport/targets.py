"""Which devices to reach: `[user@]host[:port]` names, a comma list or `@hosts.txt`, parsed into targets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgecls.errors import EdgeclsError
from edgecls.files import FileTooLargeError, read_capped

_TARGET = re.compile(r"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?(?P<host>[A-Za-z0-9_.%-]+|\[[0-9A-Fa-f:.]+\])"
                     r"(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class Target:
    spec: str  # as the user wrote it
    destination: str  # user@host for ssh
    port: Optional[int]

    @property
    def label(self) -> str:
        """A folder name for the device's files."""
        return re.sub(r"[^A-Za-z0-9._@-]+", "_", self.spec).strip("_") or "device"


MAX_HOSTS_BYTES = 1 << 20  # a hosts file of a few thousand lines; this only stops /dev/zero


def parse_targets(text: str, option: str = "--remote") -> list[Target]:
    """'pi@pi5,pi4:2222' or '@hosts.txt' (one a line, # comments) -> targets. One-line errors naming `option`."""
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            lines = read_capped(path, MAX_HOSTS_BYTES).decode("utf-8", "replace").splitlines()
        except FileTooLargeError:
            raise EdgeclsError(f"the hosts file {path} is larger than {MAX_HOSTS_BYTES} bytes") from None
        except OSError as exc:
            raise EdgeclsError(f"cannot read the hosts file {path}: {exc.strerror or exc}") from None
        specs = [line.split("#", 1)[0].strip() for line in lines]
    else:
        specs = [part.strip() for part in text.split(",")]
    specs = [s for s in specs if s]
    if not specs:
        raise EdgeclsError(f"{option} names no device (got {text!r})")
    targets = []
    for spec in specs:
        found = _TARGET.match(spec)
        if not found or spec.startswith("-"):  # never let a "host" become an ssh option
            raise EdgeclsError(f"{option}: {spec!r} is not [user@]host[:port]")
        port = int(found.group("port")) if found.group("port") else None
        if port is not None and not 0 < port < 65536:
            raise EdgeclsError(f"{option}: {spec!r} has no valid port")
        host = found.group("host").strip("[]")
        user = found.group("user")
        targets.append(Target(spec, f"{user}@{host}" if user else host, port))
    if len({t.label for t in targets}) != len(targets):
        raise EdgeclsError(f"{option} names a device twice")
    return targets
