"""A device reached over SSH that runs this checkout's edgecls in a venv of its own.

    kit (once per run: an edgecls wheel of this checkout, built once per source and then taken from
         the cache, --wheels for an offline device, the venv's key = the wheel's content)
    -> probe (python >= 3.10, 64-bit, free space, is a venv for this key there?)
    -> upload a payload folder (and, for a new venv, the wheels) as one tar stream
    -> make the venv if needed (python -m venv; pip install the wheel, its dependencies from the
       device's index or --wheels) — reused next time
    -> `python -m edgecls ARGS...` in the payload's folder there, its stderr relayed line by line
    -> bring back its out/ folder -> delete the run's folder there (the venv stays).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgecls.cache import cache_home
from edgecls.errors import EdgeclsError
from edgecls.files import read_capped, sha256_of
from edgecls.options import option
from edgecls.transport.fleet import parallel_option
from edgecls.transport.ssh import CONNECT_TIMEOUT_S, Ssh
from edgecls.transport.targets import Target

MIN_PYTHON = (3, 10)
MIN_FREE_MB = 400  # numpy, Pillow and LiteRT unpacked
SETUPTOOLS_NEEDED = 68  # pyproject.toml's build-system requires (an SPDX license string)
OUT_DIR = "out"  # the folder of the payload the device's command writes into; brought back
# Expands a leading ~ of $1 on the device (a quoted path is never expanded by the shell).
_PRELUDE = 'd=$1; case $d in "~") d=$HOME;; "~/"*) d=$HOME/${d#"~/"};; esac; '


REMOTE = "Devices over SSH (--remote)"  # the --help panel of these options


@dataclass
class RemoteOptions:
    """How to reach devices: which ones, their Python, where edgecls lives there, offline wheels,
    the ssh config, how many at once."""

    targets: Optional[str] = option(  # "a,b,c" or "@hosts.txt"
        None, flags=("--remote",), metavar="[USER@]HOST[:PORT],...|@FILE", panel=REMOTE, show_default="none",
        help="Also bench on these devices over SSH (the machine's OpenSSH client and its ~/.ssh/config; a comma "
        "list, or @FILE with one host a line), in parallel; the reports are merged beside this host's")
    python: str = option("python3", flags=("--remote-python",), panel=REMOTE,
                         help="Python (3.10+) on the device that makes its venv")
    remote_dir: str = option("~/.cache/edgecls-remote", flags=("--remote-dir",), panel=REMOTE,
                             help="Folder on the device for edgecls' venvs and runs (rm -rf it to remove everything)")
    wheels: Optional[Path] = option(  # an offline device's dependencies
        None, panel=REMOTE, show_default="the device's own package index",
        help="Folder of wheels for an offline device (pip install --no-index --find-links there)")
    ssh_config: Optional[Path] = option(None, flags=("--ssh-config", "-F"), panel=REMOTE,
                                        help="ssh config file (ssh -F)", show_default="~/.ssh/config")
    parallel: int = parallel_option(panel=REMOTE, help="--remote: devices reached at once")


# ---------------------------------------------------------------------- the kit
class NotACheckout(EdgeclsError):
    """edgecls is not running from a source checkout: there is no source to build a wheel from."""


@dataclass(frozen=True)
class Kit:
    """What every device of a run installs: `folder` holds wheel/ (this checkout's edgecls) and,
    for an offline device, wheels/; `key` names the venv that holds exactly this code."""

    folder: Path
    key: str
    offline: bool


def make_kit(folder: Path, remote: RemoteOptions) -> Kit:
    """Build this checkout's wheel (or take this version's from --wheels) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = edgecls_wheel(folder / "build", remote.wheels)
    (folder / "wheel").mkdir()
    shutil.copy2(wheel, folder / "wheel" / wheel.name)
    extra = _offline_wheels(remote.wheels, folder)
    return Kit(folder, wheel_key(wheel, extra, remote.python), remote.wheels is not None)


def build_wheel(folder: Path, root: Optional[Path] = None) -> Path:
    """An edgecls wheel of the code running here (this checkout, or `root`), so the device runs the same
    code. A wheel built before from the same files is taken from the cache (pip wheel takes seconds)."""
    import edgecls

    root = root or Path(edgecls.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise NotACheckout("edgecls is not running from a source checkout or a readable install, so no wheel can "
                           "be made here: put this version's edgecls wheel in --wheels DIR")
    source = folder / "source"
    files = wheel_sources(root)
    for name in files:  # copied first, then hashed: the key is what is built, even if a file changes meanwhile
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, source / name)
    setuptools = _setuptools_major()
    digest = hashlib.sha256(f"{sys.version}\0setuptools {setuptools}\0".encode())
    for name in files:
        digest.update(f"{name}\0{sha256_of(source / name)}\0".encode())
    cached = cache_home() / "wheels" / digest.hexdigest()[:24]
    found = next((wheel for wheel in sorted(cached.glob("edgecls-*.whl")) if _whole(wheel)), None)
    if found is not None:
        shutil.rmtree(source)
        return found
    out = folder / "wheel"
    # Without build isolation when this Python's setuptools is new enough for pyproject.toml (faster,
    # offline); else pip fetches one from the package index into an isolated build environment.
    isolation = ["--no-build-isolation"] if setuptools >= SETUPTOOLS_NEEDED else []
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(out),
                           str(source)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wheels = sorted(out.glob("edgecls-*.whl"))
    if done.returncode != 0 or not wheels:
        tail = [line for line in done.stderr.splitlines() if line.strip()]
        raise EdgeclsError(f"cannot build the edgecls wheel: {tail[-1] if tail else 'pip wheel failed'}", 1)
    shutil.rmtree(source)
    partial = cached / f".{wheels[0].name}.{os.getpid()}.partial"
    try:  # kept for the next run (a copy, then a rename); a cache that cannot be written costs a build
        cached.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheels[0], partial)
        with open(partial, "rb") as copy:
            os.fsync(copy.fileno())
        os.replace(partial, cached / wheels[0].name)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink()
    return wheels[0]


def _whole(wheel: Path) -> bool:
    """Whether a cached wheel reads back whole (every member's CRC); a damaged one is removed and built again."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            if archive.testzip() is None:
                return True
    except (OSError, zipfile.BadZipFile):
        pass
    with contextlib.suppress(OSError):
        wheel.unlink()
    return False


def wheel_sources(root: Path) -> list[str]:
    """The files of `root` that make the wheel, relative and sorted: the package without bytecode, the
    device profiles without their recorded results, the project files."""
    def under(folder: str, skip: tuple[str, ...]) -> list[str]:
        found = [p.relative_to(root) for p in (root / folder).rglob("*") if p.is_file()]
        return [p.as_posix() for p in found if "__pycache__" not in p.parts and not p.name.endswith(skip)]

    project = [name for name in ("pyproject.toml", "README.md", "LICENSE") if (root / name).is_file()]
    return sorted(under("edgecls", (".pyc",)) + under("devices", (".json", ".md")) + project)


def edgecls_wheel(folder: Path, wheels: Optional[Path]) -> Path:
    """The wheel built from this checkout; where edgecls is not running from one, this version's
    wheel from --wheels, else the installed edgecls packed as a wheel again."""
    from edgecls import __version__

    try:
        return build_wheel(folder)
    except EdgeclsError as not_built:
        found = sorted(wheels.glob(f"edgecls-{__version__}-*.whl")) if wheels and wheels.is_dir() else []
        if found:
            return found[-1]
        # a checkout whose build failed says so; only an install with no checkout is packed again
        installed = installed_wheel(folder) if isinstance(not_built, NotACheckout) else None
        if installed is None:
            raise not_built from None
        return installed


MAX_PACKAGE_FILE = 64 << 20  # edgecls' largest file is a few hundred KB: this only stops a file gone wrong
INSTALLER_NOTES = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")  # written by pip, not in a wheel


def installed_wheel(folder: Path) -> Optional[Path]:
    """This edgecls, installed (`pip install .` or from an index: no checkout to build from), as the wheel it
    came from: its files as the install's RECORD lists them, without bytecode, the console script or pip's
    own notes, and a RECORD of their digests. None for an editable install (its files are in the checkout)
    or where the install's record cannot be read."""
    import base64
    import csv
    import io
    from importlib import metadata

    import edgecls

    def dist_info(name: str) -> str:  # a file of the install's .dist-info folder, or ""
        entry = next((f for f in dist.files or () if f.parts[0].endswith(".dist-info") and f.name == name), None)
        return read_capped(Path(dist.locate_file(entry)), MAX_PACKAGE_FILE).decode() if entry else ""

    try:
        dist = metadata.distribution("edgecls")
        direct = json.loads(dist_info("direct_url.json") or "{}")
        tag = next(line.split(":", 1)[1].strip() for line in dist_info("WHEEL").splitlines()
                   if line.startswith("Tag:"))
    except (metadata.PackageNotFoundError, StopIteration, ValueError, OSError):
        return None
    running = Path(edgecls.__file__).resolve()
    if (direct.get("dir_info", {}).get("editable") or not dist.files or dist.version != edgecls.__version__
            or Path(dist.locate_file("edgecls/__init__.py")).resolve() != running):
        return None  # an editable install, or another edgecls than the one running
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"edgecls-{dist.version}-{tag}.whl"
    record, info = io.StringIO(), None
    lines = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as packed:
        for name in dist.files:
            if name.is_absolute() or ".." in name.parts or "__pycache__" in name.parts or name.suffix == ".pyc":
                continue  # the console script (../../bin), bytecode
            if name.parts[0].endswith(".dist-info"):
                info = name.parts[0]
                if name.name in INSTALLER_NOTES:
                    continue
            try:
                data = read_capped(Path(dist.locate_file(name)), MAX_PACKAGE_FILE)
            except OSError as exc:
                raise EdgeclsError(f"the installed edgecls is incomplete ({name}: {exc.strerror or exc}): install "
                                   "it again") from None
            packed.writestr(name.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            lines.writerow([name.as_posix(), f"sha256={digest}", len(data)])
        if info is None:
            return None
        lines.writerow([f"{info}/RECORD", "", ""])
        packed.writestr(f"{info}/RECORD", record.getvalue())
    return wheel


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


def _offline_wheels(folder: Optional[Path], kit: Path) -> list[Path]:
    if folder is None:
        return []
    if not folder.is_dir():
        raise EdgeclsError(f"--wheels {folder} is not a folder of wheels")
    found = sorted(folder.glob("*.whl"))
    (kit / "wheels").mkdir()
    for path in found:
        if not path.name.startswith("edgecls-"):  # the device gets this checkout's edgecls, not an old one
            shutil.copy2(path, kit / "wheels" / path.name)
    return found


# ---------------------------------------------------------------------- the device's scripts
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
# .edgecls-ready is written last into a venv: a half-made one is never reused
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
_RUN = _PRELUDE + r'''key=$2; r=$d/runs/$3; shift 3
cd -- "$r" && mkdir -p out && exec "$d/venvs/$key/bin/python" -m edgecls "$@"
'''
_DOWNLOAD = _PRELUDE + 'tar -C "$d/runs/$2/out" -cf - .'
_CLEAN = _PRELUDE + 'rm -rf -- "$d/runs/$2"'


# ---------------------------------------------------------------------- one device
@dataclass
class Device:
    """A probed device: its Python, platform, free space and whether its venv for `kit` is ready."""

    target: Target
    remote: RemoteOptions
    kit: Kit
    info: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # probe_s, upload_s, venv_s, <command>_s, download_s

    @property
    def ready(self) -> bool:
        """Whether the venv for the kit is there (found by the probe, or made by an earlier run)."""
        return bool(self.info.get("ready"))

    @property
    def made_venv(self) -> bool:
        """Whether the last run made the venv (its venv_s figure)."""
        return "venv_s" in self.seconds

    def describe(self) -> str:
        info = self.info
        return (f"Python {'.'.join(map(str, info['version']))} on {info['machine']}, {info['free_mb']} MB free in "
                f"{info['dir']}; venv {'reused' if info['ready'] else 'to make'}")

    def ssh(self) -> Ssh:
        return Ssh(self.target, self.remote.ssh_config)

    def run_edgecls(self, payload: Path, argv: list[str], folder: Path, say: Callable[[str], None],
                    keep: Callable[[str], bool] = lambda line: True, complete: Optional[str] = None,
                    what: str = "edgecls") -> Path:
        """Upload `payload` (and the kit, for a new venv), make the venv if needed, run `python -m
        edgecls ARGV...` in the payload's folder there (its stderr lines that `keep` accepts relayed
        through `say`), bring its out/ folder back into `folder` (which must hold `complete`, when
        named) and delete the run's folder there. One-line errors naming the step (`what` names the
        command: "the bench")."""
        run_id = f"{os.getpid()}-{int(time.time())}-{self.target.label}"
        ssh = self.ssh()
        uploaded = False
        self.seconds.pop("venv_s", None)  # this run's: set only when this run makes the venv
        try:
            mark = time.perf_counter()
            self._upload(ssh, payload, run_id)
            uploaded = True
            self.seconds["upload_s"] = time.perf_counter() - mark
            if not self.ready:
                mark = time.perf_counter()
                say("making the venv (python -m venv; pip install edgecls"
                    + (" from --wheels" if self.kit.offline else "") + ")")
                self._venv(ssh, run_id)
                self.seconds["venv_s"] = time.perf_counter() - mark
                self.info["ready"] = True  # a later run on this Device (search times twice) reuses it
            mark = time.perf_counter()
            ssh.lines(what, _RUN, self.remote.remote_dir, self.kit.key, run_id, *argv, say=say,
                      keep=keep)
            self.seconds[f"{argv[0]}_s"] = time.perf_counter() - mark  # bench_s for `edgecls bench ...`
            mark = time.perf_counter()
            self._download(ssh, run_id, folder, complete)
            self.seconds["download_s"] = time.perf_counter() - mark
        finally:
            if uploaded:
                try:
                    ssh.run("cleaning up", _CLEAN, self.remote.remote_dir, run_id, timeout=60)
                except EdgeclsError:
                    pass  # the connection is gone: a stale run folder stays, the caller says what failed
        return folder

    def _upload(self, ssh: Ssh, payload: Path, run_id: str) -> None:
        """The payload folder (and the kit, for a new venv) as one tar stream into the run's folder."""
        def send(archive: tarfile.TarFile) -> None:
            for entry in sorted(payload.iterdir()):
                archive.add(entry, arcname=entry.name)
            if not self.ready:
                for entry in sorted(self.kit.folder.iterdir()):
                    if entry.name in ("wheel", "wheels"):
                        archive.add(entry, arcname=entry.name)

        ssh.tar_stream("uploading the models and test images", "w|", send, _UPLOAD, self.remote.remote_dir, run_id)

    def _venv(self, ssh: Ssh, run_id: str) -> None:
        remote, info = self.remote, self.info
        try:
            ssh.run("making the venv", _VENV, remote.remote_dir, remote.python, self.kit.key, run_id,
                    "offline" if self.kit.offline else "index")
        except EdgeclsError as exc:
            text = str(exc)
            if "No matching distribution" in text or "Could not find a version" in text:
                where = "in --wheels" if self.kit.offline else "on the device's package index"
                package = re.search(r"for ([A-Za-z0-9_.-]+)", text)
                raise EdgeclsError(f"{self.target.spec}: no wheel for its platform ({info['machine']}, Python "
                                   f"{'.'.join(map(str, info['version'][:2]))}) {where}"
                                   + (f": {package.group(1)}" if package else "") + " (see edgecls doctor there)",
                                   1) from None
            if "ensurepip" in text or "venv" in text and "No module named" in text:
                raise EdgeclsError(f"{self.target.spec}: {remote.python} there cannot make a venv: "
                                   f"apt install python3-venv", 1) from None
            raise

    def _download(self, ssh: Ssh, run_id: str, folder: Path, complete: Optional[str]) -> None:
        """The device's out/ folder, unpacked (files only, no links, nothing outside) into `folder`."""
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

        ssh.tar_stream("bringing back the report", "r|", receive, _DOWNLOAD, self.remote.remote_dir, run_id,
                       complete=lambda: complete is None or (folder / complete).is_file())


def probe(target: Target, remote: RemoteOptions, kit: Kit) -> Device:
    """Reach the device and check its Python, platform and free space (one-line errors)."""
    from edgecls.runtime.doctor import ARM32_ADVICE, is_arm32

    started = time.perf_counter()
    ssh = Ssh(target, remote.ssh_config)
    done = ssh.run("probe", _PROBE, remote.remote_dir, remote.python, kit.key, timeout=CONNECT_TIMEOUT_S * 4)
    text = done.stdout.decode(errors="replace")
    host = target.spec
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
    return Device(target, remote, kit, info, {"probe_s": time.perf_counter() - started})


def connect(spec: str, remote: Optional[RemoteOptions], work: Path) -> Device:
    """The one device `spec` names ([user@]host[:port]), probed, with this checkout's kit made in
    `work`; `remote` says how to reach it (its ssh config, Python, ...; None: the defaults)."""
    from dataclasses import replace

    from edgecls.transport.targets import parse_targets

    remote = replace(remote, targets=spec) if remote is not None else RemoteOptions(spec)
    targets = parse_targets(spec)
    if len(targets) != 1:
        raise EdgeclsError(f"{spec!r} names {len(targets)} devices: name one")
    return probe(targets[0], remote, make_kit(work / "kit", remote))
