"""`edgecls bench ... --remote [user@]host[:port],...`: the same bench, run on real devices over SSH,
brought back and merged with this host's report.

Per device, in parallel (one thread each):
    probe (python >= 3.10, 64-bit, free space, is a venv for this wheel there?)
      -> upload models, test images (and, for a new venv, the wheels) as one tar stream
      -> make the venv if needed (python -m venv; pip install the edgecls wheel built from this checkout,
         its dependencies from the device's index or --wheels DIR) — reused next time (keyed by the
         wheel's content)
      -> `python -m edgecls bench --json` there, with this bench's settings
      -> bring back its report folder, re-render it here (plots need matplotlib, which a device lacks)
      -> delete the run's folder there (the venv stays).
Then the host's report, each device's and a `bench compare` of them all are moved into --report.

SSH is the machine's own OpenSSH client (subprocess), so ~/.ssh/config, keys, agents and jump hosts
work as with `ssh`; BatchMode (no password prompt, ever), the user's host-key checking (never
disabled), a connect timeout and keep-alives (a dropped connection ends the run with one line).
Every remote path travels as a quoted positional argument of a fixed `sh -c` script: a folder name
with spaces or `$(...)` is data, never code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from edgecls import jsonio
from edgecls.bench.results import BenchReport, RemoteRun
from edgecls.errors import EdgeclsError
from edgecls.files import FileTooLargeError, read_capped

CONNECT_TIMEOUT_S = 15
KEEPALIVE_S = 5  # ServerAliveInterval; 3 unanswered keep-alives end the connection
MIN_PYTHON = (3, 10)
MIN_FREE_MB = 400  # numpy, Pillow and LiteRT unpacked
SETUPTOOLS_NEEDED = 68  # pyproject.toml's build-system requires (an SPDX license string)
READY = ".edgecls-ready"  # written last into a venv: a half-made one is never reused
DEVICES_DIR = "devices"
# Expands a leading ~ of $1 on the device (a quoted path is never expanded by the shell).
_PRELUDE = 'd=$1; case $d in "~") d=$HOME;; "~/"*) d=$HOME/${d#"~/"};; esac; '
_TARGET = re.compile(r"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?(?P<host>[A-Za-z0-9_.%-]+|\[[0-9A-Fa-f:.]+\])"
                     r"(?::(?P<port>\d{1,5}))?$")


@dataclass
class RemoteOptions:
    targets: str  # "a,b,c" or "@hosts.txt"
    python: str = "python3"
    remote_dir: str = "~/.cache/edgecls-remote"
    wheels: Optional[Path] = None  # an offline device's dependencies
    ssh_config: Optional[Path] = None


@dataclass(frozen=True)
class Target:
    spec: str  # as the user wrote it
    destination: str  # user@host for ssh
    port: Optional[int]

    @property
    def label(self) -> str:
        """A folder name for the device's report."""
        return re.sub(r"[^A-Za-z0-9._@-]+", "_", self.spec).strip("_") or "device"


@dataclass
class Outcome:
    target: Target
    report: Optional[BenchReport] = None
    files: Optional[Path] = None  # the device's report folder, brought back
    error: Optional[str] = None
    timings: dict[str, float] = field(default_factory=dict)
    probe: Optional[dict[str, Any]] = None  # the device's Python, platform, free space, venv state


MAX_HOSTS_BYTES = 1 << 20  # a hosts file of a few thousand lines; this only stops /dev/zero

# ---------------------------------------------------------------------- targets
def parse_targets(text: str, option: str = "--remote") -> list[Target]:
    """'pi@pi5,pi4:2222' or '@hosts.txt' (one a line, # comments) -> targets. One-line errors naming
    `option` (--remote; export's --target)."""
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


# ---------------------------------------------------------------------- ssh
class Ssh:
    """One device through the OpenSSH client: commands are fixed sh scripts with quoted arguments."""

    def __init__(self, target: Target, config: Optional[Path]):
        if shutil.which("ssh") is None:
            raise EdgeclsError("--remote needs the OpenSSH client (ssh) on this machine: apt install openssh-client")
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
        return (f"{host}: authentication refused ({last}); --remote never asks for a password: set up a key "
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


# ---------------------------------------------------------------------- the payload
def build_wheel(folder: Path) -> Path:
    """An edgecls wheel of the code running here (this checkout), so the device runs the same code."""
    import edgecls

    root = Path(edgecls.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise EdgeclsError("edgecls is not running from a source checkout, so no wheel can be built here: "
                           "put this version's edgecls wheel in --wheels DIR, or install edgecls from a checkout")
    source = folder / "source"
    shutil.copytree(root / "edgecls", source / "edgecls", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(root / "devices", source / "devices", ignore=shutil.ignore_patterns("*.json", "*.md"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).is_file():
            shutil.copy2(root / name, source / name)
    out = folder / "wheel"
    # Without build isolation when this Python's setuptools is new enough for pyproject.toml (faster,
    # offline); else pip fetches one from the package index into an isolated build environment.
    isolation = ["--no-build-isolation"] if _setuptools_major() >= SETUPTOOLS_NEEDED else []
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(out),
                           str(source)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wheels = sorted(out.glob("edgecls-*.whl"))
    if done.returncode != 0 or not wheels:
        tail = [line for line in done.stderr.splitlines() if line.strip()]
        raise EdgeclsError(f"cannot build the edgecls wheel: {tail[-1] if tail else 'pip wheel failed'}", 1)
    shutil.rmtree(source)
    return wheels[0]


def edgecls_wheel(folder: Path, wheels: Optional[Path]) -> Path:
    """The wheel built from this checkout; where edgecls is not running from one, this version's
    wheel from --wheels."""
    from edgecls import __version__

    try:
        return build_wheel(folder)
    except EdgeclsError:
        found = sorted(wheels.glob(f"edgecls-{__version__}-*.whl")) if wheels and wheels.is_dir() else []
        if not found:
            raise
        return found[-1]


def _setuptools_major() -> int:
    from importlib import metadata

    try:
        return int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 0


def wheel_key(wheel: Path, extra: list[Path], python: str) -> str:
    """The venv's name: the wheel's content (not its zip timestamps), the offline wheels and the
    device's python, so a venv is reused exactly when it holds this code."""
    digest = hashlib.sha256(python.encode())
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if not name.endswith("/RECORD"):
                digest.update(name.encode() + b"\0" + archive.read(name))
    for path in sorted(extra):
        digest.update(path.name.encode())
    from edgecls import __version__

    return f"{__version__}-{digest.hexdigest()[:16]}"


def stage_inputs(models: list[Any], test: Any, folder: Path, with_data: bool = True
                 ) -> tuple[list[str], Optional[list[Any]]]:
    """Copy the models and the labelled test images into `folder` (models/, data/): the names the
    device's bench is given, and — when the images had to be written as PNG files — the local id of
    each position, to translate the device's flipped-image ids back. Without data (--latency-only
    on seeded random images) the device makes the same images itself."""
    from edgecls.bench.inputs import SAVED_FORMAT, SAVED_TEST_IMAGES, save_test_images

    names = []
    for model in models:
        relative = Path("models") / (model.path.parent.name or "model") / model.path.name
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model.path, folder / relative)
        names.append(relative.as_posix())
    if not with_data:
        return names, None
    data = folder / "data"
    if test.files is not None:  # the real files: the device decodes what this host decoded
        for image_id, path in zip(test.ids, test.files):
            target = data / str(image_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        (data / SAVED_TEST_IMAGES).write_text(jsonio.dumps({
            "format": SAVED_FORMAT, "source": test.source, "run": test.run, "part": test.part,
            "images": int(len(test.labels)), "classes": test.class_names}, indent=1) + "\n", encoding="utf-8")
        return names, None
    save_test_images(test, data)
    return names, list(test.ids)


def device_command(options: Any, models: list[str], data: Optional[str], uploads: Path) -> list[str]:
    """The device's `edgecls bench` arguments, generated from the marks on BenchOptions' fields
    (bench.run.measure / host): every measurement field that differs from its default reaches the
    device; a host file it names (a labels file, a profile's .toml) is copied into `uploads` (the
    payload) and named there. `data` is the staged test folder (None: the device makes its own
    seeded images, as the host did)."""
    args = ["bench", *models, "--json", "out/bench.json", "--report", "out", "--no-keras"]
    if data is not None:
        args += ["--data", data]
    for spec in fields(options):
        flag = spec.metadata.get("measure")
        value = getattr(options, spec.name)
        if flag is None or value is None or value == spec.default:
            continue
        if isinstance(value, bool):  # the flag says the non-default value (--latency-only, --no-memory)
            args.append(flag)
            continue
        if spec.metadata.get("upload") is not None:
            source = spec.metadata["upload"](value)
            folder = uploads / "inputs" / spec.name
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / source.name)
            value = f"inputs/{spec.name}/{source.name}"
        args += [flag, _argument(value)]
    return args


def _argument(value: Any) -> str:
    """One option value as the device's command line reads it back: lists comma-joined, floats exact."""
    if isinstance(value, (list, tuple)):
        return ",".join(_argument(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------- one device
_PROBE = _PRELUDE + r'''py=$2; key=$3
command -v "$py" >/dev/null 2>&1 || { echo "EDGECLS-NOPYTHON"; exit 0; }
mkdir -p -- "$d" || exit 1
v=$d/venvs/$key
ready=no
if [ -f "$v/.edgecls-ready" ] && "$v/bin/python" -c "import edgecls" >/dev/null 2>&1; then ready=yes; fi
"$py" -c 'import json, platform, shutil, struct, sys
print(json.dumps({"version": list(sys.version_info[:3]), "bits": struct.calcsize("P") * 8,
                  "machine": platform.machine(), "free_mb": shutil.disk_usage(sys.argv[1]).free // 1048576,
                  "dir": sys.argv[1], "ready": sys.argv[2] == "yes"}))' "$d" "$ready"
'''
_UPLOAD = _PRELUDE + 'r=$d/runs/$2; rm -rf -- "$r" && mkdir -p -- "$r" && tar -C "$r" -xf -'
_VENV = _PRELUDE + r'''py=$2; key=$3; r=$d/runs/$4; mode=$5
v=$d/venvs/$key
rm -rf -- "$v" && mkdir -p -- "$d/venvs" && "$py" -m venv -- "$v" || exit 3
# pip reads "; ..." in a requirement as a marker: give it names relative to the wheel's folder.
cd -- "$r/wheel" || exit 3
set -- ./edgecls-*.whl
if [ "$mode" = offline ]; then
  "$v/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links ../wheels "$1" || exit 4
else
  "$v/bin/python" -m pip install -q --disable-pip-version-check "$1" || exit 4
fi
touch -- "$v/.edgecls-ready"
'''
_BENCH = _PRELUDE + r'''key=$2; r=$d/runs/$3; shift 3
cd -- "$r" && mkdir -p out && exec "$d/venvs/$key/bin/python" -m edgecls "$@"
'''
_DOWNLOAD = _PRELUDE + 'tar -C "$d/runs/$2/out" -cf - .'
_CLEAN = _PRELUDE + 'rm -rf -- "$d/runs/$2"'


def check_device(target: Target, remote: RemoteOptions, key: str, log: Callable[[str], None]) -> Outcome:
    """Reach the device and check its Python (before the host's bench, so a wrong name or a
    refused key is said at once); the outcome carries the probe's findings or the error."""
    outcome = Outcome(target)
    started = time.perf_counter()
    try:
        outcome.probe = _probe(Ssh(target, remote.ssh_config), remote, key)
    except EdgeclsError as exc:
        outcome.error = str(exc)
        return outcome
    outcome.timings["probe_s"] = time.perf_counter() - started
    info = outcome.probe
    log(f"[{target.spec}] Python {'.'.join(map(str, info['version']))} on {info['machine']}, {info['free_mb']} MB "
        f"free in {info['dir']}; venv {'reused' if info['ready'] else 'to make'}")
    return outcome


def bench_device(outcome: Outcome, remote: RemoteOptions, payload: Path, key: str, command: list[str],
                 out: Path, log: Callable[[str], None]) -> Outcome:
    """Everything after the probe for one device; the error of a failed step is the outcome's one line."""
    if outcome.error:
        return outcome
    target, info = outcome.target, outcome.probe
    say = lambda message: log(f"[{target.spec}] {message}")  # noqa: E731
    run_id = f"{os.getpid()}-{int(time.time())}-{target.label}"
    ssh: Optional[Ssh] = None
    uploaded = False
    try:
        ssh = Ssh(target, remote.ssh_config)
        mark = time.perf_counter()
        _upload(ssh, remote, payload, run_id, with_wheels=not info["ready"])
        uploaded = True
        outcome.timings["upload_s"] = time.perf_counter() - mark
        if not info["ready"]:
            mark = time.perf_counter()
            say("making the venv (python -m venv; pip install edgecls" + (" from --wheels" if remote.wheels else "")
                + ")")
            _venv(ssh, remote, key, run_id, info)
            outcome.timings["venv_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        _bench(ssh, remote, key, run_id, command, say)
        outcome.timings["bench_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        outcome.files = _download(ssh, remote, run_id, out / target.label)
        outcome.timings["download_s"] = time.perf_counter() - mark
        from edgecls.bench.compare import read_report_file

        outcome.report = read_report_file(outcome.files / "bench.json", f"{target.spec}'s bench.json")
        outcome.timings["total_s"] = sum(outcome.timings.values())
        outcome.report.remote = RemoteRun(target=target.spec, remote_dir=info["dir"], python=info["version"],
                                          venv=key, venv_reused=bool(info["ready"]),
                                          seconds={k: round(v, 2) for k, v in outcome.timings.items()})
    except EdgeclsError as exc:
        outcome.error = str(exc)
    finally:
        if ssh is not None and uploaded:
            try:
                ssh.run("cleaning up", _CLEAN, remote.remote_dir, run_id, timeout=60)
            except EdgeclsError:
                pass  # the connection is gone: a stale run folder stays, the report says what failed
    return outcome


def _probe(ssh: Ssh, remote: RemoteOptions, key: str) -> dict[str, Any]:
    from edgecls.runtime.doctor import ARM32_ADVICE, is_arm32

    done = ssh.run("probe", _PROBE, remote.remote_dir, remote.python, key, timeout=CONNECT_TIMEOUT_S * 4)
    text = done.stdout.decode(errors="replace")
    host = ssh.target.spec
    if "EDGECLS-NOPYTHON" in text:
        raise EdgeclsError(f"{host}: no {remote.python} on the device: install Python 3.10+ (apt install python3 "
                           f"python3-venv) or give --remote-python", 1)
    try:
        info = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EdgeclsError(f"{host}: {remote.python} on the device did not answer the probe: "
                           f"{' '.join(text.split())[:200] or 'no output'}", 1) from None
    if tuple(info["version"][:2]) < MIN_PYTHON:
        raise EdgeclsError(f"{host}: {remote.python} there is Python {'.'.join(map(str, info['version']))}; edgecls "
                           f"needs 3.10 or newer (give --remote-python)", 1)
    if is_arm32(info["machine"], info["bits"]):
        raise EdgeclsError(f"{host}: no wheel for its platform ({info['machine']}, {info['bits']}-bit Python): "
                           f"{ARM32_ADVICE}", 1)
    if not info["ready"] and info["free_mb"] < MIN_FREE_MB:
        raise EdgeclsError(f"{host}: disk full on the device: {info['free_mb']} MB free in {info['dir']}, a venv "
                           f"needs about {MIN_FREE_MB} MB (free space there or give another --remote-dir)", 1)
    return info


def _upload(ssh: Ssh, remote: RemoteOptions, payload: Path, run_id: str, with_wheels: bool) -> None:
    """The payload folder as one tar stream into the run's folder on the device."""
    def send(archive: tarfile.TarFile) -> None:
        for entry in sorted(payload.iterdir()):
            if entry.name in ("wheel", "wheels") and not with_wheels:
                continue
            archive.add(entry, arcname=entry.name)

    _tar_stream(ssh, "uploading the models and test images", "w|", send, _UPLOAD, remote.remote_dir, run_id)


def _venv(ssh: Ssh, remote: RemoteOptions, key: str, run_id: str, info: dict[str, Any]) -> None:
    mode = "offline" if remote.wheels else "index"
    try:
        ssh.run("making the venv", _VENV, remote.remote_dir, remote.python, key, run_id, mode)
    except EdgeclsError as exc:
        text = str(exc)
        if "No matching distribution" in text or "Could not find a version" in text:
            where = "in --wheels" if remote.wheels else "on the device's package index"
            package = re.search(r"for ([A-Za-z0-9_.-]+)", text)
            raise EdgeclsError(f"{ssh.target.spec}: no wheel for its platform ({info['machine']}, Python "
                               f"{'.'.join(map(str, info['version'][:2]))}) {where}"
                               + (f": {package.group(1)}" if package else "") + " (see edgecls doctor there)",
                               1) from None
        if "ensurepip" in text or "venv" in text and "No module named" in text:
            raise EdgeclsError(f"{ssh.target.spec}: {remote.python} there cannot make a venv: "
                               f"apt install python3-venv", 1) from None
        raise


def _bench(ssh: Ssh, remote: RemoteOptions, key: str, run_id: str, command: list[str],
           say: Callable[[str], None]) -> None:
    """The device's bench, its progress lines relayed as they come."""
    proc = subprocess.Popen(ssh.command(_BENCH, remote.remote_dir, key, run_id, *command),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tail: list[str] = []
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode(errors="replace").rstrip()
        if line and not line.startswith("note: plots skipped"):  # drawn here from the JSON instead
            tail = (tail + [line])[-20:]
            say(line)
    code = proc.wait()
    if code != 0:
        errors = [line for line in tail if line.startswith("edgecls: error:")]
        if code != 255 and errors:
            raise EdgeclsError(f"{ssh.target.spec}: the bench failed on the device: "
                               f"{errors[-1][len('edgecls: error: '):]}", 1)
        raise ssh.error("running the bench", code, "\n".join(tail))


def _download(ssh: Ssh, remote: RemoteOptions, run_id: str, folder: Path) -> Path:
    """The device's report folder, unpacked (files only, no links, nothing outside) into `folder`."""
    folder.mkdir(parents=True)

    def receive(archive: tarfile.TarFile) -> None:
        for member in archive:
            name = Path(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts:
                continue
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            with open(target, "wb") as handle:
                shutil.copyfileobj(source, handle)

    _tar_stream(ssh, "bringing back the report", "r|", receive, _DOWNLOAD, remote.remote_dir, run_id,
                complete=lambda: (folder / "bench.json").is_file())
    return folder


def _tar_stream(ssh: Ssh, step: str, mode: str, handle: Callable[[tarfile.TarFile], None], script: str, *args: str,
                complete: Callable[[], bool] = lambda: True) -> None:
    """One tar stream to ("w|") or from ("r|") a device script; ssh's stderr is read aside so a
    full pipe never stalls it, and a failed or cut stream is one error naming `step`."""
    sending = mode == "w|"
    proc = subprocess.Popen(ssh.command(script, *args), stdin=subprocess.PIPE if sending else subprocess.DEVNULL,
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
        raise ssh.error(step, code or 255, b"".join(errors).decode(errors="replace"))


# ---------------------------------------------------------------------- the whole job
def bench_remote(options: Any, log: Callable[[str], None] = print) -> BenchReport:
    """Bench here and on every device of `options.remote`; write the host's, each device's and the
    merged report into --report (all or nothing); print the merged table; return the host's report.
    One device that fails is a one-line error; a device of a fleet that fails is an error row, and
    the run ends with a one-line error (exit 1) once everything else is written."""
    from dataclasses import replace

    from edgecls.bench.run import run_bench

    remote: RemoteOptions = options.remote
    targets = parse_targets(remote.targets)
    if options.report_dir is None:
        raise EdgeclsError("--remote needs --report DIR for the devices' reports (a run directory has RUN/bench)")
    from edgecls.bench.report import check_writable

    check_writable(options.json_path, options.report_dir)
    options.report_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".edgecls-remote-", dir=options.report_dir.parent))
    try:
        payload = work / "payload"
        payload.mkdir()
        # --latency-only without --data: seeded random images, made alike on the device
        staged: dict[str, Any] = {"data": None if options.latency_only and options.data is None else "data"}

        def stage(models: list[Any], test: Any) -> None:  # called by run_bench before the host's timing
            staged["names"], staged["ids"] = stage_inputs(models, test, payload, with_data=staged["data"] is not None)

        wheel = edgecls_wheel(work, remote.wheels)
        (payload / "wheel").mkdir()
        shutil.copy2(wheel, payload / "wheel" / wheel.name)
        extra = _offline_wheels(remote.wheels, payload)
        key = wheel_key(wheel, extra, remote.python)
        log(f"Checking {len(targets)} device(s) over SSH: {', '.join(t.spec for t in targets)}")
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            outcomes = list(pool.map(lambda t: check_device(t, remote, key, log), targets))
        if len(targets) == 1 and outcomes[0].error:
            raise EdgeclsError(outcomes[0].error, 1)
        for outcome in outcomes:
            if outcome.error:
                log(f"warning: {outcome.error}; the other devices go on")
        # the host first (the devices' runs do not load it); the steady load runs on the devices only
        report = run_bench(replace(options, sustain=None), log=log, on_inputs=stage)
        command = device_command(options, staged["names"], staged["data"], payload)
        out = work / "out"
        (out / DEVICES_DIR).mkdir(parents=True)
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            outcomes = list(pool.map(lambda o: bench_device(o, remote, payload, key, command, out / DEVICES_DIR,
                                                            log), outcomes))
        if len(targets) == 1 and outcomes[0].error:
            raise EdgeclsError(outcomes[0].error, 1)
        merged = _write(report, outcomes, staged["ids"], options, out, log)
        _publish(out, options.report_dir)
        if options.json_path is not None:
            from edgecls.atomic import write_text_atomic

            write_text_atomic(options.json_path, jsonio.dumps(merged, indent=1, ensure_ascii=False) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _show(report, outcomes, merged, options.report_dir)
    failed = [o.target.spec for o in outcomes if o.error]
    if failed:
        raise EdgeclsError(f"{len(failed)} of {len(outcomes)} devices failed ({', '.join(failed)}): see their error "
                           f"rows; the other reports are in {options.report_dir}", exit_code=1)
    return report


def _offline_wheels(folder: Optional[Path], payload: Path) -> list[Path]:
    if folder is None:
        return []
    if not folder.is_dir():
        raise EdgeclsError(f"--wheels {folder} is not a folder of wheels")
    found = sorted(folder.glob("*.whl"))
    (payload / "wheels").mkdir()
    for path in found:
        if not path.name.startswith("edgecls-"):  # the device gets this checkout's edgecls, not an old one
            shutil.copy2(path, payload / "wheels" / path.name)
    return found


def remap_flipped(report: BenchReport, local_ids: list[Any]) -> None:
    """The device read the test images from PNG files named POSITION-ID.png: give its flipped images
    this host's index and id, so the lists compare one to one."""
    for model in report.models:
        for flip in model.vs_reference.flipped if model.vs_reference else []:
            found = re.match(r"(\d{5})-", Path(str(flip.id)).name)
            if found and int(found.group(1)) < len(local_ids):
                flip.index, flip.id = int(found.group(1)), local_ids[int(found.group(1))]


def _write(report: BenchReport, outcomes: list[Outcome], local_ids: Optional[list[Any]], options: Any,
           out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """The host's report, each device's (re-rendered here) and the merged compare, into `out`."""
    from edgecls.bench.compare import compare, write_outputs
    from edgecls.bench.report import write_reports

    write_reports(report, out, log=log)
    paths = [out / "bench.json"]
    for outcome in outcomes:
        if outcome.report is None:
            continue
        if local_ids is not None:
            remap_flipped(outcome.report, local_ids)
        outcome.report.notes = [n for n in outcome.report.notes if not n.startswith("plots skipped")]
        for stale in outcome.files.glob("*.png"):
            stale.unlink()
        write_reports(outcome.report, outcome.files, log=log)
        paths.append(outcome.files / "bench.json")
    merged = compare(paths)
    merged["reports"][0]["name"] = "host"
    for entry, outcome in zip(merged["reports"][1:], [o for o in outcomes if o.report is not None]):
        entry["name"] = outcome.target.spec
    _rename_rows(merged, ["host"] + [o.target.spec for o in outcomes if o.report is not None])
    for outcome in outcomes:
        if outcome.error:
            merged["reports"].append({"file": None, "name": outcome.target.spec, "measured_on": "not measured",
                                      "is_device": True, "emulated": None, "created": "—", "cpu": "—",
                                      "arch": "—", "profile": None, "notes": [outcome.error], "error": outcome.error})
            merged["rows"].append([outcome.target.spec, "error", outcome.error] + ["—"] * (len(merged["columns"]) - 3))
    write_outputs(merged, out, None)
    merged.pop("_reports", None)
    return merged


def _rename_rows(merged: dict[str, Any], names: list[str]) -> None:
    """compare names reports by file stem (all are bench.json): name them host / the device."""
    from edgecls.bench.compare import report_labels

    files = [Path(r["file"]) for r in merged["reports"]]
    old = dict(zip(report_labels(files), names))
    for row in merged["rows"]:
        row[0] = old.get(row[0], row[0])


def _publish(out: Path, report_dir: Path) -> None:
    """Move the finished files into --report (replacing the previous ones of the same names)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    for entry in sorted(out.iterdir()):
        final = report_dir / entry.name
        if entry.is_dir():
            if final.exists():
                old = report_dir / f".{entry.name}.old-{os.getpid()}"
                os.replace(final, old)
                os.replace(entry, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(entry, final)
        else:
            os.replace(entry, final)


def _show(report: BenchReport, outcomes: list[Outcome], merged: dict[str, Any], report_dir: Path) -> None:
    from edgecls.bench.compare import render_compare_table
    from edgecls.bench.report import print_tables, render_sections

    tables = [render_compare_table(merged)]
    for name, doc in [("host", report)] + [(o.target.spec, o.report) for o in outcomes if o.report]:
        for table in render_sections(doc):
            table.title = f"{name}: {table.title}"
            tables.append(table)
    print_tables(*tables)
    for outcome in outcomes:
        if outcome.report:
            r = outcome.report.remote
            print(f"{outcome.target.spec}: venv {'reused' if r.venv_reused else 'made'}; "
                  + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in r.seconds.items()))
        else:
            print(f"error: {outcome.error}")
    print(f"Reports in {report_dir}: bench.md (host), {DEVICES_DIR}/<device>/bench.md, compare.md")
