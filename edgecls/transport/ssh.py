"""One device through the machine's own OpenSSH client: fixed `sh -c` scripts with quoted arguments,
tar streams both ways, and one line for every way ssh can fail.

SSH is OpenSSH as a subprocess, so ~/.ssh/config, keys, agents and jump hosts work as with `ssh`;
BatchMode (no password prompt, ever), the user's host-key checking (never disabled), a connect
timeout and keep-alives (a dropped connection ends the step with one line). Every remote path
travels as a quoted positional argument of a fixed script: a folder name with spaces or `$(...)`
is data, never code.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from edgecls.errors import EdgeclsError
from edgecls.transport.targets import Target

CONNECT_TIMEOUT_S = 15
KEEPALIVE_S = 5  # ServerAliveInterval; 3 unanswered keep-alives end the connection


class Ssh:
    """One device through the OpenSSH client: commands are fixed sh scripts with quoted arguments."""

    def __init__(self, target: Target, config: Optional[Path]):
        if shutil.which("ssh") is None:
            raise EdgeclsError("reaching a device needs the OpenSSH client (ssh) on this machine: "
                               "apt install openssh-client")
        self.target = target
        self.base = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                     "-o", f"ServerAliveInterval={KEEPALIVE_S}", "-o", "ServerAliveCountMax=3", "-T"]
        if config is not None:
            self.base += ["-F", str(config)]
        if target.port is not None:
            self.base += ["-p", str(target.port)]
        self.base += ["--", target.destination]

    def command(self, script: str, *args: str) -> list[str]:
        """ssh ... -- host 'sh -c SCRIPT edgecls ARG...' with every argument quoted for the remote shell."""
        words = ["sh", "-c", script, "edgecls-remote", *args]
        return [*self.base, " ".join(shlex.quote(w) for w in words)]

    def run(self, step: str, script: str, *args: str, stdin: Optional[bytes] = None,
            timeout: Optional[float] = None) -> subprocess.CompletedProcess:
        try:
            done = subprocess.run(self.command(script, *args), input=stdin, capture_output=True, timeout=timeout,
                                  stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise self.error(step, 255, f"no answer in {timeout:.0f} s") from None
        if done.returncode != 0:
            raise self.error(step, done.returncode, done.stderr.decode(errors="replace"))
        return done

    def lines(self, what: str, script: str, *args: str, say: Callable[[str], None],
              keep: Callable[[str], bool] = lambda line: True) -> None:
        """Run a script that runs `what` (e.g. "the bench"), relaying each stderr line it writes (those
        `keep` accepts) as it comes; a failure is one line (the last `edgecls: error:` line, if any)."""
        proc = subprocess.Popen(self.command(script, *args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        tail: list[str] = []
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line and keep(line):
                tail = (tail + [line])[-20:]
                say(line)
        code = proc.wait()
        if code != 0:
            errors = [line for line in tail if line.startswith("edgecls: error:")]
            if code != 255 and errors:
                raise EdgeclsError(f"{self.target.spec}: {what} failed on the device: "
                                   f"{errors[-1][len('edgecls: error: '):]}", 1)
            raise self.error(f"running {what}", code, "\n".join(tail))

    def tar_stream(self, step: str, mode: str, handle: Callable[[tarfile.TarFile], None], script: str, *args: str,
                   complete: Callable[[], bool] = lambda: True) -> None:
        """One tar stream to ("w|") or from ("r|") a device script; ssh's stderr is read aside so a
        full pipe never stalls it, and a failed or cut stream is one error naming `step`."""
        sending = mode == "w|"
        proc = subprocess.Popen(self.command(script, *args), stdin=subprocess.PIPE if sending else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL if sending else subprocess.PIPE, stderr=subprocess.PIPE)
        errors: list[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
        reader.start()
        try:
            with tarfile.open(fileobj=proc.stdin if sending else proc.stdout, mode=mode) as archive:
                handle(archive)
        except (BrokenPipeError, OSError, tarfile.TarError):
            pass  # ssh ended early or the stream was cut: its exit code and message say why
        finally:
            if sending:
                try:
                    proc.stdin.close()  # the end of the stream for the device (also after a local failure)
                except OSError:
                    pass
        code = proc.wait()
        reader.join()
        if code != 0 or not complete():
            raise self.error(step, code or 255, b"".join(errors).decode(errors="replace"))

    def error(self, step: str, code: int, stderr: str) -> EdgeclsError:
        return EdgeclsError(explain(self.target, step, code, stderr), exit_code=1)


def explain(target: Target, step: str, code: int, stderr: str) -> str:
    """One line for a failed ssh step, naming the cause (from ssh's and the device's messages)."""
    text = " ".join(stderr.split())
    host = target.spec
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("@@@")]
    last = lines[-1] if lines else f"exit {code}"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
        why = ("its host key does not match the one in known_hosts" if "HAS CHANGED" in text or "mismatch" in text
               else "its host key is not known (or does not match known_hosts)")
        return (f"{host}: refused: {why}; edgecls never skips host-key checking: ssh {host} once to check "
                f"and accept the key, or fix known_hosts")
    if "Permission denied" in text or "Too many authentication failures" in text:
        return (f"{host}: authentication refused ({last}); edgecls never asks for a password: set up a key "
                f"(ssh-copy-id {host}) or an agent")
    if any(s in text for s in ("Could not resolve hostname", "Name or service not known")):
        return f"{host}: unreachable: the host name does not resolve ({last})"
    if any(s in text for s in ("Connection refused", "No route to host", "Connection timed out",
                               "Network is unreachable", "Operation timed out")) and step == "probe":
        return f"{host}: unreachable ({last})"
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return f"{host}: disk full on the device while {step} ({last}); free space there or give another --remote-dir"
    if code == 255 or any(s in text for s in ("closed by remote host", "Broken pipe", "not responding",
                                              "Connection reset", "Connection closed")):
        if step == "probe":
            return f"{host}: unreachable ({last})"
        return (f"{host}: the connection dropped while {step} ({last}); nothing was written here: run the same "
                f"command again (the device's venv is reused if it was complete)")
    return f"{host}: {step} failed on the device: {last}"
