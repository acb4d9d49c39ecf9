#!/usr/bin/env python3
"""Run edgecls' device side on emulated 64-bit ARM cores and compare it with this host.

    scripts/arm64-check                      # set up (cached), then check cortex-a72 and cortex-a76
    scripts/arm64-check --cpu rpi5           # a core, or a device profile's qemu_cpu (devices/rpi5.toml)
    scripts/arm64-check --no-bench           # without `edgecls bench` (it adds ~8 s a core)
    scripts/arm64-check setup                # only build the emulated environment
    scripts/arm64-check python --cpu cortex-a76 -- -m edgecls doctor    # any command, emulated

What it builds, all inside one cache folder (default .cache/arm64 in the repo; --cache or
$EDGECLS_ARM64_CACHE), installing nothing system-wide:
  qemu/    qemu-aarch64 (user mode, 10.x) taken out of bookworm-backports' qemu-user .deb;
           bookworm's own 7.2 crashes LiteRT and gives wrong int8 results with -cpu max
  rootfs/  an arm64 Debian bookworm with python3.11 (the Pi OS one), from .debs fetched by a
           private apt state (APT_CONFIG, arch arm64, its own lists and status) and `dpkg-deb -x`
  site/    aarch64 wheels of edgecls' runtime dependencies and of its serve extra, at the versions
           installed on this host
  pyc/     bytecode for all of it (PYTHONPYCACHEPREFIX), so an emulated start takes ~2 s, not ~15
  work/    one folder a run (the generated test images and the raw outputs); a finished run's
           folder is removed when the next run starts
Downloads (.debs, apt lists, wheels) are deleted once their part is built; each part has a
STAMP.json and is rebuilt only when what it was built from changes (or with --refresh).

What it checks, on the host and under `qemu-aarch64 -cpu CORE` for each core, with the repo's own
edgecls source on both sides and EDGECLS_BACKEND=litert:
  doctor      `python -m edgecls doctor --json`: ok, aarch64, 64-bit, same backend and library versions
  info        `python -m edgecls info --json MODEL`: the same report
  predict     `python -m edgecls predict --json --top-k ALL MODEL IMAGES...`: the same rows; an
              integer-quantised model's scores identical (but for one output step after an int8
              SOFTMAX, whose aarch64 kernel differs: see ScoreRule; --strict-int8 refuses even that),
              a float model's top-1 identical and its scores within --tolerance; unreadable images
              give the same error on both sides
  preprocess  a hash of `edgecls.runtime.preprocess.load_image(...)` of every image at every input
              size the models take (and a few more): identical tensors
  bench       `python -m edgecls bench MODELS --data BENCH_IMAGES --json ... --report ...` (emulated: with
              the core's device profile, e.g. --device rpi4): every model's accuracy figures, its
              agreement with the float model and the images whose top-1 flipped, identical; and the
              emulated report labelled so (machine.emulated, device.is_device false, and its table and
              Markdown saying the latency is not a device figure). Latency is never compared.
  serve       `python -m edgecls serve MODEL --port 0` (the last model) started on each side, one
              POST /v1/classify over HTTP from the host of the first image predict classified, then
              SIGTERM: the same classes as the host's server (compared as predict's rows), the same
              model SHA-256, and exit 0 on both sides
on real images (../shared/data: catsdogs photos, MNIST digits) when present, generated ones (JPEG
draft decoding, EXIF rotation, CMYK, 16-bit, palette and alpha, WebP, unreadable files...), and the
bench's labelled images (predict compares their scores one by one too). The bench's images are
--bench-data DIR, else MODEL_DIR/test-images/, else made on the host from the model's run:
config.toml beside the model gives the data and split seed, and the first 10 held-out test images
of each class are written as PNG class folders (~100 for digits); none of these: bench skipped, said.

Exit codes: 0 every core matches the host; 1 a difference (the diff says which image, which model,
host vs arm values); 2 bad arguments or the host itself cannot run edgecls; 3 the emulated
environment cannot be set up (a download failed, no apt-get / dpkg-deb): tests skip on 3.

Emulated runs are a correctness check, not a speed measurement: timings printed here are the
emulator's, never a device's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgecls.bench.results import BenchReport, ModelResult

REPO = Path(__file__).resolve().parent.parent
CACHE_ENV = "EDGECLS_ARM64_CACHE"
SHARED_ENV = "EDGECLS_SHARED_DATA"
DEFAULT_CPUS = ("cortex-a72", "cortex-a76")  # Raspberry Pi 4 and Pi 5
DEFAULT_MODELS = (REPO / "models/digits-seed/model_float32.tflite", REPO / "models/digits-seed/model_int8.tflite")
EXTRA_SIZES = ((96, 96, "rgb"), (37, 53, "rgb"))  # (height, width, colour) checked besides the models' own
DEFAULT_TOLERANCE = 1e-5
DEFAULT_THREADS = 2
COMMAND_TIMEOUT = 900  # seconds, one emulated command
BENCH_PER_CLASS = 10  # held-out test images per class for the bench: ~100 for digits, ~8 s a core
# Few timings (latency under emulation is no device figure, only the label on it is checked), one
# thread. No peak memory: its probe re-executes sys.executable, which qemu user mode cannot start
# without binfmt ("Exec format error"), and an emulator's memory would be no device figure either.
BENCH_SETTINGS = ("--no-memory", "--runs", 4, "--warmup", 1, "--batch-size", 4, "--threads", 1)
NOT_A_DEVICE_FIGURE = "not a device figure"  # what an emulated bench report must say of its latency
DEVICE_EXTRAS = ("serve",)  # installed on the emulated side too: `edgecls serve` is checked there
SERVE_START_TIMEOUT = 300  # seconds for an emulated `edgecls serve` to load and check its model

# --- where things come from ------------------------------------------------------------------
DEBIAN = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
ROOTFS_SOURCES = ((DEBIAN, "bookworm"), (DEBIAN, "bookworm-updates"), (DEBIAN_SECURITY, "bookworm-security"))
ROOTFS_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6")
QEMU_SOURCES = ((DEBIAN, "bookworm-backports"),)
QEMU_PACKAGE, QEMU_MEMBER = "qemu-user", "./usr/bin/qemu-aarch64"
TARGET_PYTHON = "3.11"  # bookworm's, and 64-bit Raspberry Pi OS's
# glibc 2.36 (bookworm) takes manylinux wheels up to 2_36.
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)]
TARGET_MARKERS = {  # PEP 508 environment of the emulated Python, to pick the dependencies it needs
    "implementation_name": "cpython", "implementation_version": "3.11.2", "os_name": "posix",
    "platform_machine": "aarch64", "platform_python_implementation": "CPython", "platform_release": "",
    "platform_system": "Linux", "platform_version": "", "python_full_version": "3.11.2",
    "python_version": TARGET_PYTHON, "sys_platform": "linux", "extra": "",
}

EXIT_OK, EXIT_DIFFERENT, EXIT_USAGE, EXIT_SETUP = 0, 1, 2, 3


class SetupError(Exception):
    """The emulated environment cannot be built here (exit 3)."""


class UsageError(Exception):
    """Bad arguments, or the host cannot run edgecls (exit 2)."""


class NeedsBuild(Exception):
    """A part of the environment is missing, found where nothing may be built (a shared lock)."""


def say(message: str = "") -> None:
    print(message, flush=True)


# =============================================================================================
# Set-up: qemu, rootfs, site-packages, bytecode. Each part is a folder with a STAMP.json.
# =============================================================================================
@dataclass
class Cache:
    root: Path
    run_folder: Path | None = None  # this run's own folder under work/ (own_run)
    may_build: bool = True  # False under the shared lock: a missing part raises NeedsBuild

    @property
    def qemu(self) -> Path:
        return self.root / "qemu" / "qemu-aarch64"

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def python(self) -> Path:
        return self.rootfs / "usr/bin" / f"python{TARGET_PYTHON}"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def pyc(self) -> Path:
        return self.root / "pyc"

    @property
    def work(self) -> Path:
        return self.run_folder or self.root / "work"

    @contextlib.contextmanager
    def locked(self, shared: bool = False) -> Iterator[None]:
        """The environment's lock: exclusive to build it, shared to use it (checks run side by side,
        each in its own work folder; a rebuild waits until they end)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield

    @contextlib.contextmanager
    def own_run(self) -> Iterator[None]:
        """A fresh folder under work/ for this run, locked while it runs; the folders of runs that have
        ended (and the single work folder of older versions) are removed first."""
        import fcntl

        base = self.root / "work"
        base.mkdir(parents=True, exist_ok=True)
        for old in base.iterdir():
            if old.is_dir() and not _still_running(old):
                shutil.rmtree(old, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix=f"run-{time.strftime('%Y%m%d-%H%M%S')}-", dir=base))
        with open(folder / RUNNING, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self.run_folder = folder
            try:
                yield
            finally:
                self.run_folder = None

    @contextlib.contextmanager
    def building(self, folder: Path, key: Any, **details: Any) -> Iterator[tuple[Path, dict]]:
        """Build into FOLDER.tmp, then stamp it and move it into place (a killed build leaves no
        half-made folder that looks finished). The body may add to the details dict."""
        if not self.may_build:
            raise NeedsBuild(folder.name)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        started = time.perf_counter()
        extra: dict = dict(details)
        try:
            yield tmp, extra
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        stamp = {"key": key, "built_seconds": round(time.perf_counter() - started, 1),
                 "built_at": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
        (tmp / "STAMP.json").write_text(json.dumps(stamp, indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)


RUNNING = ".running"  # in a run's work folder, locked by the run while it lasts


def _still_running(folder: Path) -> bool:
    import fcntl

    try:
        with open(folder / RUNNING, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False  # not a run's folder (an older version's images/ or run/)
    except BlockingIOError:
        return True
    return False


@contextlib.contextmanager
def environment(cache: Cache, refresh: bool) -> Iterator[dict]:
    """The environment, ready and held (shared lock) for the body: built first under the exclusive
    lock when a part is missing or out of date, or with --refresh. The set-up dict says what was built."""
    built = None
    if refresh:
        with cache.locked():
            built = set_up(cache, refresh=True)
    while True:
        with cache.locked(shared=True):
            cache.may_build = False
            try:
                setup = set_up(cache)
            except NeedsBuild:
                setup = None
            finally:
                cache.may_build = True
            if setup is not None:
                yield built or setup
                return
        with cache.locked():
            built = set_up(cache)


def read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "STAMP.json").read_text())
    except (OSError, ValueError):
        return None


def stamp_matches(folder: Path, key: Any) -> bool:
    stamp = read_stamp(folder)
    return stamp is not None and stamp.get("key") == json.loads(json.dumps(key))  # tuples read back as lists


def run_tool(argv: Sequence[Any], what: str, timeout: float = 600, **kwargs: Any) -> str:
    """Run a set-up tool; any failure is a SetupError that names the step and the tool's last words."""
    argv = [str(a) for a in argv]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, **kwargs)
    except FileNotFoundError:
        raise SetupError(f"{what}: {argv[0]} is not installed on this host") from None
    except subprocess.TimeoutExpired:
        raise SetupError(f"{what}: {argv[0]} took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("E:", "ERROR:", "error:"))]  # apt's, pip's
        raise SetupError(f"{what} failed (exit {done.returncode}): " + " | ".join((errors or lines[-4:])[:3]))
    return done.stdout


class PrivateApt:
    """apt-get with its own sources, lists, cache and an empty dpkg status (APT_CONFIG): it
    resolves dependencies as for an empty machine of `arch` and never touches the host's apt."""

    def __init__(self, root: Path, arch: str, sources: Iterable[tuple[str, str]]):
        self.root, self.arch = root, arch
        shutil.rmtree(root, ignore_errors=True)  # no .debs left over from an interrupted build
        self.archives = root / "cache/archives"
        for sub in ("etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "state/lists/partial",
                    "cache/archives/partial", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "state/status").touch()
        (root / "etc/sources.list").write_text("".join(
            f"deb [arch={arch} signed-by={KEYRING}] {uri} {suite} main\n" for uri, suite in sources))
        settings = {
            "Dir::Etc": root / "etc", "Dir::Etc::sourcelist": root / "etc/sources.list",
            "Dir::Etc::sourceparts": root / "etc/sources.list.d", "Dir::Etc::parts": root / "etc/apt.conf.d",
            "Dir::Etc::preferencesparts": root / "etc/preferences.d", "Dir::State": root / "state",
            "Dir::State::status": root / "state/status", "Dir::Cache": root / "cache", "Dir::Log": root / "log",
            "APT::Architecture": arch, "Acquire::Languages": "none", "Acquire::Retries": "0",
            "Acquire::http::Timeout": "20", "APT::Sandbox::User": "root",
        }
        lines = ['Dir "/";'] + [f'{k} "{v}";' for k, v in settings.items()] + [f'APT::Architectures {{ "{arch}"; }};']
        self.config = root / "apt.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def apt_get(self, *args: str, what: str, cwd: Path | None = None) -> str:
        if not Path(KEYRING).exists():
            raise SetupError(f"{what}: {KEYRING} is missing (Debian's archive keyring)")
        env = {**os.environ, "APT_CONFIG": str(self.config), "DEBIAN_FRONTEND": "noninteractive"}
        return run_tool(["apt-get", "-q", *args], what, env=env, cwd=cwd)

    def update(self) -> None:
        self.apt_get("update", "--error-on=any", what=f"apt-get update (private {self.arch} state)")

    def download_with_dependencies(self, packages: Sequence[str]) -> list[Path]:
        self.apt_get("-y", "-d", "--no-install-recommends", "install", *packages,
                     what=f"downloading {', '.join(packages)} ({self.arch})")
        return sorted(self.archives.glob("*.deb"))

    def download_one(self, package: str) -> Path:
        self.apt_get("download", package, what=f"downloading {package} ({self.arch})", cwd=self.archives)
        found = sorted(self.archives.glob(f"{package}_*.deb"))
        if not found:
            raise SetupError(f"apt-get download {package} left no .deb in {self.archives}")
        return found[-1]

    def remove(self) -> None:
        """Lists and .debs are only needed to build: drop them (about 130 MB)."""
        shutil.rmtree(self.root, ignore_errors=True)


def ensure_qemu(cache: Cache, refresh: bool) -> dict:
    folder = cache.qemu.parent
    key = {"sources": QEMU_SOURCES, "package": QEMU_PACKAGE, "member": QEMU_MEMBER}
    if not refresh and stamp_matches(folder, key) and cache.qemu.exists():
        return read_stamp(folder)
    say(f"[setup] qemu-aarch64: downloading {QEMU_PACKAGE} from bookworm-backports")
    apt = PrivateApt(cache.root / "apt-amd64", "amd64", QEMU_SOURCES)
    with cache.building(folder, key) as (tmp, details):
        apt.update()
        deb = apt.download_one(QEMU_PACKAGE)
        extract_one_file(deb, QEMU_MEMBER, tmp / "qemu-aarch64")
        details["version"] = run_tool([tmp / "qemu-aarch64", "--version"], "qemu-aarch64 --version").splitlines()[0]
        details["deb"] = deb.name
    apt.remove()
    return read_stamp(folder)


def extract_one_file(deb: Path, member: str, dest: Path) -> None:
    """Copy one file out of a .deb (the qemu-user package has every target: we need one)."""
    import tarfile

    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                          stdin=subprocess.DEVNULL) as unpack:
        with tarfile.open(fileobj=unpack.stdout, mode="r|") as tar:
            for entry in tar:
                if entry.name == member and entry.isfile():
                    with tar.extractfile(entry) as source, open(dest, "wb") as target:
                        shutil.copyfileobj(source, target)
                    dest.chmod(0o755)
                    break
        unpack.kill()  # the rest of the archive is not needed
    if not dest.exists():
        raise SetupError(f"{deb.name} has no {member}")


def ensure_rootfs(cache: Cache, refresh: bool) -> dict:
    key = {"sources": ROOTFS_SOURCES, "packages": ROOTFS_PACKAGES, "arch": "arm64"}
    if not refresh and stamp_matches(cache.rootfs, key) and cache.python.exists():
        return read_stamp(cache.rootfs)
    say(f"[setup] arm64 root file system: {', '.join(ROOTFS_PACKAGES)} and their dependencies from bookworm")
    apt = PrivateApt(cache.root / "apt-arm64", "arm64", ROOTFS_SOURCES)
    with cache.building(cache.rootfs, key) as (tmp, details):
        apt.update()
        debs = apt.download_with_dependencies(ROOTFS_PACKAGES)
        for deb in debs:
            run_tool(["dpkg-deb", "-x", deb, tmp], f"dpkg-deb -x {deb.name}")
        details["debs"] = [deb.name for deb in debs]
    apt.remove()
    return read_stamp(cache.rootfs)


def runtime_pins(pyproject: Path = REPO / "pyproject.toml", extras: Sequence[str] = DEVICE_EXTRAS) -> list[str]:
    """name==version of edgecls' runtime dependencies (and those of `extras`) and theirs, for the
    emulated Python (markers evaluated for aarch64 Linux CPython 3.11), at the versions installed on
    this host."""
    import importlib.metadata

    import tomllib

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]

    project = tomllib.loads(pyproject.read_text())["project"]
    todo = list(project["dependencies"]) + [r for extra in extras for r in project["optional-dependencies"][extra]]
    pins: dict[str, str] = {}
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate(TARGET_MARKERS):
            continue
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in pins:
            continue
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            raise UsageError(f"{requirement.name} (an edgecls runtime dependency) is not installed on this "
                             f"host: pip install -e {REPO} first") from None
        pins[name] = distribution.version
        todo.extend(distribution.requires or [])
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def ensure_site(cache: Cache, pins: list[str], refresh: bool) -> dict:
    key = {"pins": pins, "python": TARGET_PYTHON, "platforms": PLATFORMS}
    if not refresh and stamp_matches(cache.site, key):
        return read_stamp(cache.site)
    say(f"[setup] aarch64 wheels: {' '.join(pins)}")
    target = ["--only-binary=:all:", "--python-version", TARGET_PYTHON, "--implementation", "cp",
              "--abi", "cp" + TARGET_PYTHON.replace(".", "")] + [arg for p in PLATFORMS for arg in ("--platform", p)]
    wheels = cache.root / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    with cache.building(cache.site, key) as (tmp, details):
        run_tool(pip + ["download", "--no-deps", "--no-cache-dir", "--timeout", "20", "--retries", "1",
                        "-d", wheels, *target, *pins], "pip download (aarch64 wheels)")
        files = sorted(wheels.glob("*.whl"))
        run_tool(pip + ["install", "--no-deps", "--no-index", "--no-compile", "--no-warn-script-location",
                        "--target", tmp, *target, *files], "pip install --target (aarch64 wheels)")
        details["wheels"] = [f.name for f in files]
    shutil.rmtree(wheels, ignore_errors=True)
    return read_stamp(cache.site)


def ensure_bytecode(cache: Cache, parts: list[dict], refresh: bool) -> dict | None:
    """Compile the emulated Python's stdlib and site-packages with this host's Python 3.11 (same
    bytecode), into the PYTHONPYCACHEPREFIX both sides use: an emulated start then takes ~2 s."""
    key = [part.get("key") for part in parts]
    if not refresh and stamp_matches(cache.pyc, key):
        return read_stamp(cache.pyc)
    if sys.version_info[:2] != tuple(map(int, TARGET_PYTHON.split("."))):
        say(f"[setup] bytecode: this host's Python is {platform.python_version()}, not {TARGET_PYTHON}: "
            "the emulated Python compiles its own on first use (slower first run)")
        return None
    say("[setup] bytecode for the emulated Python")
    with cache.building(cache.pyc, key) as (tmp, _details):
        env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        lib = cache.rootfs / "usr/lib" / f"python{TARGET_PYTHON}"
        # test suites are skipped; a few files that do not compile (lib2to3 test data...) are fine.
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-x", r"[/\\](tests?|idle_test)[/\\]",
                        lib, cache.site], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=900)
    return read_stamp(cache.pyc)


def set_up(cache: Cache, refresh: bool = False) -> dict:
    """Build whatever is missing or out of date; returns what was built and how long it took."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise SetupError(f"this host is {platform.machine()}: the emulator set-up is written for x86_64 hosts")
    started, since = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S")
    pins = runtime_pins()
    qemu = ensure_qemu(cache, refresh)
    rootfs = ensure_rootfs(cache, refresh)
    site = ensure_site(cache, pins, refresh)
    ensure_bytecode(cache, [rootfs, site], refresh)
    parts = {"qemu": qemu, "rootfs": rootfs, "site": site, "pyc": read_stamp(cache.pyc) or {}}
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "qemu": qemu.get("version", "?"), "pins": pins,
            "built": [name for name, part in parts.items() if part.get("built_at", "") >= since],
            "from_clean_seconds": sum(part.get("built_seconds", 0) for part in parts.values())}


def valid_cpus(cache: Cache) -> list[str]:
    listing = subprocess.run([str(cache.qemu), "-cpu", "help"], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL).stdout  # (it exits 1 after listing them)
    return [line.strip() for line in listing.splitlines()[1:] if line.strip()]


def disk_used(folder: Path) -> int:
    """Bytes of disk the folder takes (like du -s: blocks, hard links once)."""
    seen, total = set(), 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


# =============================================================================================
# Running Python on one side: the host, or qemu-aarch64 -cpu CORE.
# =============================================================================================
@dataclass
class Output:
    code: int
    out: str
    err: str
    seconds: float

    def tail(self, lines: int = 4) -> str:
        text = [line for line in (self.err or self.out).splitlines() if line.strip()]
        return " | ".join(text[-lines:]) or "(no output)"


@dataclass
class Side:
    """Where a command runs: `python` is the argv that starts a Python there."""

    name: str  # "host" or the emulated core
    python: list[str]
    env: dict[str, str]
    models: list[Path] = field(default_factory=list)  # the models used on this side, by slot
    seconds: float = 0.0

    @property
    def emulated(self) -> bool:
        return self.name != "host"

    def run(self, args: Sequence[Any], timeout: float = COMMAND_TIMEOUT) -> Output:
        started = time.perf_counter()
        try:
            done = subprocess.run(self.python + [str(a) for a in args], env=self.env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
            result = Output(done.returncode, done.stdout, done.stderr, time.perf_counter() - started)
        except subprocess.TimeoutExpired:
            result = Output(-1, "", f"timed out after {timeout:.0f} s", time.perf_counter() - started)
        self.seconds += result.seconds
        return result


def side_environment(cache: Cache, pythonpath: list[Path], name: str) -> dict[str, str]:
    """The caller's environment without its Python, QEMU and edgecls settings, plus ours. Bytecode
    of both sides (the repo's edgecls included) goes to the cache, not beside the sources. Each side
    has its own edgecls dataset cache, emptied every run (check_side): the bench decodes its image
    folder on that side, instead of reading arrays the other side decoded into ~/.cache/edgecls."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_", "EDGECLS_"))}
    env.update({
        "PYTHONPATH": os.pathsep.join(map(str, pythonpath)), "PYTHONNOUSERSITE": "1",
        "PYTHONPYCACHEPREFIX": str(cache.pyc), "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8",
        "EDGECLS_BACKEND": "litert", "EDGECLS_CACHE": str(cache.work / "run" / name / "edgecls-cache"),
    })
    return env


def host_side(cache: Cache) -> Side:
    return Side("host", [sys.executable], side_environment(cache, [REPO], "host"))


def emulated_side(cache: Cache, cpu: str) -> Side:
    """qemu-aarch64 user mode with a pinned core (never -cpu max: it gives wrong int8 results)."""
    python = [str(cache.qemu), "-cpu", cpu, "-L", str(cache.rootfs), str(cache.python)]
    env = side_environment(cache, [cache.site, REPO], cpu)
    env["EDGECLS_EMULATED"] = f"qemu-aarch64 -cpu {cpu}"  # edgecls bench labels its figures emulated
    return Side(cpu, python, env)


# =============================================================================================
# The images: real ones from ../shared/data, and generated ones covering the decoder's paths.
# =============================================================================================
@dataclass
class ImageSet:
    files: list[Path]
    groups: dict[str, int]  # what they are -> how many
    roots: list[Path]  # for short names in the report

    def short(self, name: str | Path) -> str:
        path = Path(name)
        for root in self.roots:
            with contextlib.suppress(ValueError):
                return str(path.relative_to(root))
        return str(path)


def collect_images(cache: Cache, explicit: list[str], shared: Path | None, max_real: int,
                   generated: bool) -> ImageSet:
    files, groups, roots = [], {}, [cache.work / "images"]
    if explicit:
        found = [p for item in explicit for p in _image_files(Path(item))]
        files += found
        groups["given"] = len(found)
    elif shared is not None and max_real > 0:
        roots.append(shared)
        catsdogs = shared / "catsdogs"
        if catsdogs.is_dir():
            photos = [
                p for cls in sorted(catsdogs.iterdir()) if cls.is_dir() for p in _spread(_image_files(cls), max_real)
            ]
            files += photos
            groups["catsdogs photos"] = len(photos)
        mnist = shared / "mnist/t10k-images-idx3-ubyte.gz"
        if mnist.is_file():
            digits = write_mnist_pngs(mnist, cache.work / "images/mnist", max_real)
            files += digits
            groups["MNIST digits"] = len(digits)
    if generated:
        made = write_generated_images(cache.work / "images/generated")
        files += made
        groups["generated"] = len(made)
    return ImageSet(files, groups, roots)


def _image_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [path]


def _spread(items: list[Path], count: int) -> list[Path]:
    """`count` items spread evenly over the sorted list (not just the first few)."""
    if len(items) <= count:
        return items
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def write_mnist_pngs(idx_gz: Path, folder: Path, count: int) -> list[Path]:
    import gzip

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(idx_gz, "rb") as handle:
        _magic, total, rows, cols = (int.from_bytes(handle.read(4), "big") for _ in range(4))
        raw = handle.read(min(count, total) * rows * cols)
    paths = []
    for i in range(len(raw) // (rows * cols)):
        path = folder / f"mnist-test-{i:04d}.png"
        Image.frombytes("L", (cols, rows), raw[i * rows * cols:(i + 1) * rows * cols]).save(path)
        paths.append(path)
    return paths


def write_generated_images(folder: Path) -> list[Path]:
    """Deterministic pictures that take each of the decoder's and converter's paths, plus two
    files no decoder can read (both sides must give the same error row)."""
    import numpy as np
    from PIL import Image, ImageDraw

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2024)

    def photo(height: int, width: int) -> Image.Image:  # smooth colour field with noise: JPEG-like content
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 64], axis=-1)
        return Image.fromarray(np.clip(base + rng.normal(0, 24, base.shape), 0, 255).astype(np.uint8))

    def digit(text_lines: list[tuple], size: int = 28) -> Image.Image:
        image = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(image)
        for line in text_lines:
            draw.line(line, fill=255, width=3)
        return image

    rotated = photo(90, 160)
    exif = rotated.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    alpha = photo(40, 40).convert("RGBA")
    alpha.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (40, 1))))
    palette = photo(30, 50).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    frames = [photo(24, 24).convert("P"), Image.new("P", (24, 24), 3)]
    gray16 = Image.fromarray((np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16))
    checker = Image.fromarray((((np.indices((60, 60)).sum(axis=0) // 6) % 2) * 255).astype(np.uint8)).convert("RGB")
    la = Image.merge("LA", [photo(32, 32).convert("L"), Image.new("L", (32, 32), 128)])
    truncated = folder / "unreadable-truncated.jpg"

    items: list[tuple[str, Callable[[Path], Any]]] = [
        ("gradient-upscaled.png", lambda p: photo(20, 15).save(p)),
        ("large-420.jpg", lambda p: photo(600, 800).save(p, quality=92)),  # draft decoding at 1/8
        ("small-444.jpg", lambda p: photo(90, 120).save(p, quality=95, subsampling=0)),
        ("progressive.jpg", lambda p: photo(200, 300).save(p, quality=85, progressive=True)),
        ("gray.jpg", lambda p: photo(150, 200).convert("L").save(p, quality=90)),
        ("exif-orientation-6.jpg", lambda p: rotated.save(p, quality=90, exif=exif)),
        ("cmyk.jpg", lambda p: photo(64, 64).convert("CMYK").save(p, quality=90)),
        ("rgba-alpha.png", lambda p: alpha.save(p)),
        ("palette-transparent.gif", lambda p: palette.save(p, transparency=0)),
        ("animated.gif", lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=100)),
        ("gray16.png", lambda p: gray16.save(p)),
        ("checker.bmp", lambda p: checker.save(p)),
        ("lossy.webp", lambda p: photo(120, 160).save(p, quality=80)),
        ("lossless.webp", lambda p: photo(50, 70).save(p, lossless=True)),
        ("gray-alpha.png", lambda p: la.save(p)),
        ("one-pixel.png", lambda p: Image.new("RGB", (1, 1), (200, 30, 90)).save(p)),
        ("digit-seven.png", lambda p: digit([(6, 6, 22, 6), (22, 6, 12, 23)]).save(p)),
        ("digit-one.png", lambda p: digit([(14, 4, 14, 24), (10, 8, 14, 4)]).save(p)),
        ("unreadable-text.png", lambda p: p.write_text("this is not a picture\n")),
        (truncated.name, lambda p: p.write_bytes(_jpeg_bytes(photo(64, 64))[:700])),
    ]
    paths = []
    for name, write in items:
        path = folder / name
        write(path)
        paths.append(path)
    return paths


def _jpeg_bytes(image: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# Run by the host's Python (it needs edgecls.data, and scikit-learn for digits): the held-out test
# split of the run that made a model, reproduced from the config.toml beside it (same data, seed
# and fractions, so the same split), first N images of each class, written by the bench's own
# --save-test-images writer (PNG class folders that `edgecls bench --data` reads back exactly).
BENCH_IMAGES_SNIPPET = r"""
import json, sys, tomllib
from pathlib import Path
import numpy as np
from edgecls.bench.testset import TestSet, save_test_images
from edgecls.data import load_dataset, make_split
job = json.load(open(sys.argv[1]))
config = tomllib.loads(Path(job["config"]).read_text())["train"]
data = load_dataset(config["data"], config["img_size"], config["color"])
test = make_split(data, config["val_fraction"], config["test_fraction"], config["seed"]).test
picked = np.concatenate([test[data.labels[test] == c][:job["per_class"]] for c in range(len(data.class_names))])
ids = [data.paths[i] for i in picked] if data.paths is not None else [int(i) for i in picked]
save_test_images(TestSet(np.asarray(data.images[picked]), data.labels[picked], data.class_names, ids, None,
                         config["data"], "test", run=config.get("out")), Path(job["folder"]))
print(json.dumps({"images": len(ids), "classes": data.class_names}))
"""


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")  # what the folder loader reads


@dataclass
class BenchImages:
    folder: Path | None  # a folder of class sub-folders; None: no bench (`why` says why)
    why: str  # where the images come from, or why there are none

    def files(self) -> list[Path]:
        if self.folder is None:
            return []
        return sorted(p for p in self.folder.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)


def bench_images(host: Side, model: Path, given: str | None, folder: Path) -> BenchImages:
    """The bench's labelled images: --bench-data as it is, else the first BENCH_PER_CLASS of each
    class of MODEL_DIR/test-images/ (a run's held-out split, saved by --save-test-images) copied
    into `folder`, else the same made on the host from the model's run (config.toml beside the
    model), else none."""
    if given:
        if not Path(given).is_dir():
            raise UsageError(f"--bench-data {given} is not a folder (of class sub-folders)")
        return BenchImages(Path(given).resolve(), f"given ({given})")
    shutil.rmtree(folder, ignore_errors=True)
    saved = model.parent / "test-images"
    if saved.is_dir():
        for image in BenchImages(saved, "").files():
            target = folder / image.parent.name
            target.mkdir(parents=True, exist_ok=True)
            if len(list(target.iterdir())) < BENCH_PER_CLASS:
                shutil.copy2(image, target / image.name)
        with contextlib.suppress(OSError):  # where they came from: the bench's note then says "held-out"
            shutil.copy2(saved / "test-images.json", folder / "test-images.json")
        return BenchImages(folder, f"the first {BENCH_PER_CLASS} of each class of {saved}, saved beside the model")
    config = model.parent / "config.toml"
    if not config.is_file():
        return BenchImages(None, f"no labelled images for {model.name} (no test-images/ or config.toml beside "
                                 f"it): give --bench-data DIR, e.g. made by `edgecls bench RUN --save-test-images DIR`")
    job = folder.with_name(folder.name + "-job.json")
    job.parent.mkdir(parents=True, exist_ok=True)
    job.write_text(json.dumps({"config": str(config), "per_class": BENCH_PER_CLASS, "folder": str(folder)}))
    made = probe_json(host, ["-c", BENCH_IMAGES_SNIPPET, job], f"bench images from {config.parent.name}'s run")
    if "failed" in made:
        return BenchImages(None, f"cannot make the bench images from {config} on this host: {made['failed']}")
    return BenchImages(folder, f"the held-out test split of {config.parent.name}'s run (reproduced from its "
                               f"config.toml), first {BENCH_PER_CLASS} of each class")


# =============================================================================================
# What each side is asked. Each probe returns plain data; the comparisons below read it.
# =============================================================================================
PREPROCESS_SNIPPET = r"""
import hashlib, json, sys
import numpy as np
import PIL
from PIL import features
from edgecls.runtime.preprocess import load_image
job = json.load(open(sys.argv[1]))
arrays, hashes = {}, {}
for i, image in enumerate(job["images"]):
    row = hashes[image] = {}
    for height, width, color in job["specs"]:
        spec = f"{height}x{width} {color}"
        try:
            pixels = load_image(image, (height, width), color)
        except Exception as exc:
            row[spec] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        row[spec] = {"sha256": hashlib.sha256(pixels.tobytes()).hexdigest(), "shape": list(pixels.shape)}
        arrays[f"{i}|{spec}"] = pixels
np.savez(job["arrays"], **arrays)
libs = {name: features.version(name) for name in ("jpg", "zlib", "webp", "libtiff")}
print(json.dumps({"hashes": hashes, "numpy": np.__version__, "pillow": PIL.__version__, "libs": libs}))
"""


def probe_json(side: Side, args: list[Any], what: str, ok_codes: tuple[int, ...] = (0,), lines: bool = False) -> dict:
    """Run `python ARGS` on `side`, expecting JSON on stdout: one document ("data"), or with
    `lines` one per line ("rows")."""
    result = side.run(args)
    say(f"  [{side.name}] {what}: exit {result.code}, {result.seconds:.1f} s")
    if result.code not in ok_codes:
        return {"failed": f"exit {result.code}: {result.tail()}", "code": result.code}
    try:
        if lines:
            return {"code": result.code, "rows": [json.loads(line) for line in result.out.splitlines() if line.strip()]}
        return {"code": result.code, "data": json.loads(result.out)}
    except ValueError:
        return {"failed": f"output is not JSON: {result.out[:200]!r} {result.tail()}", "code": result.code}


def probe_bench(side: Side, data: Path, out_dir: Path, device: str | None) -> dict:
    """`edgecls bench` of the side's models on `data`: its JSON report ("data"), what it printed
    ("terminal") and its Markdown ("markdown"). The emulated side runs it as a user would on that
    board (--device PROFILE) and sets EDGECLS_EMULATED, so the report must label itself."""
    json_path, report_dir = out_dir / "bench.json", out_dir / "bench-report"
    args = ["-m", "edgecls", "bench", *side.models, "--data", data, "--json", json_path, "--report", report_dir,
            *BENCH_SETTINGS, *(["--device", device] if device else [])]
    result = side.run(args)
    say(f"  [{side.name}] bench{' --device ' + device if device else ''} ({len(side.models)} models): "
        f"exit {result.code}, {result.seconds:.1f} s")
    if result.code != 0:
        return {"failed": f"exit {result.code}: {result.tail()}"}
    try:
        report = json.loads(json_path.read_text(encoding="utf-8"))
        markdown = (report_dir / "bench.md").read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        return {"failed": f"no readable report ({exc})"}
    return {"data": report, "terminal": result.out, "markdown": markdown, "device": device}


def probe_serve(side: Side, model: Path, image: Path, threads: int) -> dict:
    """`edgecls serve MODEL` started on `side` (127.0.0.1, a free port), one POST /v1/classify of
    `image` from here, then SIGTERM: its answer ("data") and exit code ("code")."""
    import signal
    import urllib.request

    started = time.perf_counter()
    command = side.python + ["-m", "edgecls", "serve", str(model), "--port", "0", "--threads", str(threads)]
    process = subprocess.Popen(command, env=side.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    url = ""
    try:
        deadline = time.monotonic() + SERVE_START_TIMEOUT
        for line in process.stderr:  # "edgecls: listening on http://127.0.0.1:PORT (...", then "edgecls: ready: ..."
            said.append(line.strip())
            found = re.search(r"listening on (http://\S+) ", line)
            url = found.group(1) if found else url
            if "ready:" in line or "error:" in line or time.monotonic() > deadline:
                break
        if not url or "ready:" not in said[-1]:
            return {"failed": f"serve did not become ready: {' | '.join(said[-3:]) or 'no output'}"}
        request = urllib.request.Request(f"{url}/v1/classify?top_k=1000", data=image.read_bytes(),
                                         headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=COMMAND_TIMEOUT) as response:  # noqa: S310 (our own server)
            answer = json.loads(response.read())
    except OSError as exc:
        return {"failed": f"POST /v1/classify: {exc}"}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        process.stderr.close()
    seconds = time.perf_counter() - started
    side.seconds += seconds
    say(f"  [{side.name}] serve {model.name}, POST {image.name}: exit {code} after SIGTERM, {seconds:.1f} s")
    return {"code": code, "data": answer, "image": str(image)}


def serve_image(host_results: dict, slot: int) -> Path:
    """The first image the host's predict classified with model `slot`: the one serve is asked about."""
    return Path(next(row["file"] for row in host_results["predict"][slot]["rows"] if row.get("classes")))


def compare_serve(host: dict, arm: dict, rule: ScoreRule, short: Callable[[str], str]) -> list[str]:
    """The emulated server's answer against the host server's (as predict's rows are compared), and
    both stopped cleanly by SIGTERM (exit 0)."""
    if "failed" in host or "failed" in arm:
        return [f"host {host.get('failed', 'ok')}; arm {arm.get('failed', 'ok')}"]
    diffs = [f"exit code after SIGTERM: {name} {side['code']}" for name, side in (("host", host), ("arm", arm))
             if side["code"] != 0]
    served = [side["data"]["model"]["sha256"] for side in (host, arm)]
    if served[0] != served[1]:
        diffs.append(f"model sha256: host {served[0][:12]}, arm {served[1][:12]}")
    rows = [{"code": 0, "rows": [{"file": side["image"], "classes": side["data"]["classes"]}]} for side in (host, arm)]
    found, _ = compare_predict(rows[0], rows[1], rule, short)
    return diffs + found


def device_profile_for(cpu: str) -> str | None:
    """The first device profile (devices/*.toml, by name) whose qemu_cpu is `cpu`: rpi4 for cortex-a72."""
    import tomllib

    for path in sorted((REPO / "devices").glob("*.toml")):
        with contextlib.suppress(OSError, ValueError):
            if tomllib.loads(path.read_text()).get("qemu_cpu") == cpu:
                return path.stem
    return None


def check_side(side: Side, images: ImageSet, specs: list[tuple[int, int, str]], top_k: list[int],
               threads: int, work: Path, bench: BenchImages) -> dict:
    """Every probe on one side: doctor, info and predict of each model, preprocessing hashes, bench."""
    out_dir = work / "run" / side.name
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    results: dict[str, Any] = {"doctor": probe_json(side, ["-m", "edgecls", "doctor", "--json"], "doctor")}
    results["info"], results["predict"] = [], []
    for slot, model in enumerate(side.models):
        results["info"].append(probe_json(side, ["-m", "edgecls", "info", "--json", model], f"info {model.name}"))
        args = [
            "-m",
            "edgecls",
            "predict",
            "--json",
            "--top-k",
            top_k[slot],
            "--threads",
            threads,
            model,
            *images.files,
        ]
        # exit 1: some images could not be read (the unreadable ones are there on purpose)
        results["predict"].append(probe_json(side, args, f"predict {model.name} ({len(images.files)} images)",
                                             ok_codes=(0, 1), lines=True))
    job = out_dir / "preprocess-job.json"
    job.write_text(json.dumps({"images": [str(p) for p in images.files], "specs": specs,
                               "arrays": str(out_dir / "preprocess.npz")}))
    results["preprocess"] = probe_json(side, ["-c", PREPROCESS_SNIPPET, job], f"preprocess ({len(specs)} sizes)")
    results["preprocess_arrays"] = out_dir / "preprocess.npz"
    if bench.folder is not None:
        device = device_profile_for(side.name) if side.emulated else None
        results["bench"] = probe_bench(side, bench.folder, out_dir, device)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return results


# =============================================================================================
# Comparisons: each returns human-readable difference lines (empty: the same).
# =============================================================================================
EXACT_MODES = ("int8", "uint8", "int8 (float I/O)", "int16x8")  # integer arithmetic: bit-identical
JSON_ROUNDING = 5e-7  # predict --json prints scores to 6 decimals


@dataclass(frozen=True)
class ScoreRule:
    """How close one model's scores must be on the two sides.

    An integer-quantised model computes in integers: its scores must be identical, with one known
    exception. TFLite's int8/uint8 SOFTMAX has its own kernel on aarch64 (a uint16 lookup table,
    ARM64-only code) and another elsewhere (fixed-point exp), which can land one output step apart
    (1/256) on a real Pi as under emulation; measured here: every tensor before SOFTMAX identical.
    So a model with a SOFTMAX op may differ by `softmax_step` at most, and the report counts those
    rows apart. A float (or hybrid) model runs different float kernels: top-1 identical and scores
    within `tolerance`."""

    exact: bool
    tolerance: float = 0.0
    softmax_step: float = 0.0  # 0: bit-identical required

    @classmethod
    def for_model(cls, info: dict, tolerance: float, strict_int8: bool = False) -> ScoreRule:
        if info.get("quantization", {}).get("detected") not in EXACT_MODES:
            return cls(exact=False, tolerance=tolerance)
        if strict_int8 or "SOFTMAX" not in info.get("ops", {}):
            return cls(exact=True)
        outputs = info.get("outputs") or [{}]
        return cls(exact=True, softmax_step=outputs[0].get("scale") or 1 / 256)

    def describe(self) -> str:
        if not self.exact:
            return f"identical top-1, scores within {self.tolerance:g}"
        if self.softmax_step:
            return f"identical scores, or one int8 SOFTMAX step ({self.softmax_step:.6g}) apart"
        return "identical scores"


def compare_doctor(host: dict, arm: dict) -> list[str]:
    if "failed" in arm:
        return [f"failed on arm: {arm['failed']}"]
    if "failed" in host:
        return [f"failed on the host: {host['failed']}"]
    h, a = host["data"], arm["data"]
    diffs = []
    expected = {"ok": True, "arch": "aarch64", "python_bits": 64, "warnings": []}
    for key, value in expected.items():
        if a.get(key) != value:
            diffs.append(f"{key}: arm says {a.get(key)!r}, expected {value!r}")
    for key in ("numpy", "pillow", "backend"):
        if h.get(key) != a.get(key):
            diffs.append(f"{key}: host {h.get(key)!r}, arm {a.get(key)!r}")
    return diffs


IGNORED_INFO_KEYS = {"load_seconds", "seconds"}  # timings, should info ever report any


def compare_info(host: dict, arm: dict) -> list[str]:
    if "failed" in host or "failed" in arm:
        return [f"host {host.get('failed', 'ok')}; arm {arm.get('failed', 'ok')}"]
    return [f"{path}: host {h!r}, arm {a!r}" for path, h, a in json_differences(host["data"], arm["data"])]


def json_differences(host: Any, arm: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, host value, arm value) of every leaf that differs."""
    if isinstance(host, dict) and isinstance(arm, dict):
        for key in sorted(set(host) | set(arm)):
            if key not in IGNORED_INFO_KEYS:
                yield from json_differences(host.get(key), arm.get(key), f"{path}.{key}" if path else key)
    elif isinstance(host, list) and isinstance(arm, list) and len(host) == len(arm):
        for i, (h, a) in enumerate(zip(host, arm)):
            yield from json_differences(h, a, f"{path}[{i}]")
    elif host != arm:
        yield path, host, arm


def compare_predict(host: dict, arm: dict, rule: ScoreRule, short: Callable[[str], str]) -> tuple[list[str], dict]:
    """Row by row (keyed by file): the same error, or the same top-1 and scores as `rule` says.
    Returns (differences, summary counts)."""
    if "failed" in host or "failed" in arm:
        return [f"host {host.get('failed', 'ok')}; arm {arm.get('failed', 'ok')}"], {}
    diffs = []
    if host["code"] != arm["code"]:
        diffs.append(f"exit code: host {host['code']}, arm {arm['code']}")
    host_rows = {row["file"]: row for row in host["rows"]}
    arm_rows = {row["file"]: row for row in arm["rows"]}
    worst, same, softmax_steps = 0.0, 0, []
    for file in list(host_rows) + [f for f in arm_rows if f not in host_rows]:
        h, a = host_rows.get(file), arm_rows.get(file)
        where = short(file)
        if h is None or a is None:
            diffs.append(f"{where}: only {'host' if a is None else 'arm'} has a row for it")
            continue
        if "error" in h or "error" in a:
            if h.get("error") != a.get("error"):
                diffs.append(
                    f"{where}: host {h.get('error') or 'classified it'}; arm {a.get('error') or 'classified it'}"
                )
            else:
                same += 1
            continue
        hs = {c["index"]: c["score"] for c in h["classes"]}
        as_ = {c["index"]: c["score"] for c in a["classes"]}
        h_top, a_top = h["classes"][0], a["classes"][0]
        problems = []
        if h_top["index"] != a_top["index"]:
            problems.append(
                f"top-1 host {h_top['label']} ({h_top['score']:.6f}), arm {a_top['label']} ({a_top['score']:.6f})"
            )
        if set(hs) != set(as_):
            problems.append(f"classes listed: host {sorted(hs)}, arm {sorted(as_)}")
        gaps = {i: abs(hs[i] - as_[i]) for i in set(hs) & set(as_)}
        biggest = max(gaps, key=gaps.get) if gaps else None
        if biggest is not None:
            worst = max(worst, gaps[biggest])
            if rule.exact and gaps[biggest] > 0:
                if gaps[biggest] <= rule.softmax_step + JSON_ROUNDING:
                    if not problems:  # allowed (see ScoreRule), and reported
                        softmax_steps.append(where)
                    else:  # the allowed step changed the answer: said plainly, never allowed
                        problems.append("the scores are one int8 SOFTMAX step apart at most: aarch64's own "
                                        "SOFTMAX kernel tipped a near-tie")
                else:
                    shown = ", ".join(f"class {i}: host {hs[i]:.6f} arm {as_[i]:.6f}"
                                      for i in sorted(gaps, key=gaps.get, reverse=True)[:3] if gaps[i] > 0)
                    problems.append(f"scores differ (integer model, allowed: {rule.describe()}): {shown}")
            elif not rule.exact and gaps[biggest] > rule.tolerance:
                problems.append(f"max |score diff| {gaps[biggest]:.2e} > {rule.tolerance:g} at class {biggest}: "
                                f"host {hs[biggest]:.6f} arm {as_[biggest]:.6f}")
        if problems:
            diffs.append(f"{where}: " + "; ".join(problems))
        else:
            same += 1
    return diffs, {"same": same, "rows": len(host_rows), "max_diff": worst, "softmax_steps": softmax_steps}


def compare_preprocess(host: dict, arm: dict, host_arrays: Path, arm_arrays: Path,
                       short: Callable[[str], str]) -> tuple[list[str], dict]:
    if "failed" in host or "failed" in arm:
        return [f"host {host.get('failed', 'ok')}; arm {arm.get('failed', 'ok')}"], {}
    h_all, a_all = host["data"], arm["data"]
    diffs, same, total = [], 0, 0
    for key in ("numpy", "pillow"):  # (the bundled codec versions are reported, not required equal)
        if h_all[key] != a_all[key]:
            diffs.append(f"{key}: host {h_all[key]}, arm {a_all[key]}")
    for i, (image, row) in enumerate(h_all["hashes"].items()):
        arm_row = a_all["hashes"].get(image, {})
        for spec, h in row.items():
            total += 1
            a = arm_row.get(spec, {"error": "missing"})
            if h == a:
                same += 1
            elif "error" in h or "error" in a:
                diffs.append(f"{short(image)} @ {spec}: host {h.get('error', 'decoded')}; "
                             f"arm {a.get('error', 'decoded')}")
            else:
                detail = _pixel_difference(host_arrays, arm_arrays, f"{i}|{spec}")
                diffs.append(f"{short(image)} @ {spec}: host sha256 {h['sha256'][:12]}, "
                             f"arm {a['sha256'][:12]} ({detail})")
    return diffs, {"same": same, "total": total, "libs": (h_all["libs"], a_all["libs"])}


def _pixel_difference(host_npz: Path, arm_npz: Path, key: str) -> str:
    """How two tensors differ: shapes, or how many values and by how much (first place too)."""
    import numpy as np

    try:
        with np.load(host_npz) as h_file, np.load(arm_npz) as a_file:
            h, a = h_file[key].astype(int), a_file[key].astype(int)
    except (OSError, KeyError, ValueError) as exc:
        return f"arrays unavailable: {exc}"
    if h.shape != a.shape:
        return f"shape host {h.shape}, arm {a.shape}"
    delta = np.abs(h - a)
    where = tuple(int(v) for v in np.argwhere(delta)[0])
    return (f"{int((delta > 0).sum())} of {delta.size} values differ, max |diff| {int(delta.max())}; "
            f"first at (row, col, channel) {where}: host {h[where]}, arm {a[where]}")


BENCH_MODEL_KEYS = ("mode", "size_bytes", "sha256", "io", "accuracy")  # compared exactly (accuracy: counts)
BENCH_PAIRED_KEYS = ("reference", "delta_accuracy", "agreement", "per_class_delta")  # exactly, too


def compare_bench(host: dict, arm: dict, model_names: list[str], rules: list[ScoreRule],
                  tolerance: float) -> tuple[list[str], str]:
    """(differences, a summary) of the emulated side's bench report against the host's.

    Model by model (by position, like predict): the same file and the same accuracy figures
    (top-1, top-k, macro-F1, per class, confusion matrix), the same Δ accuracy and agreement with
    the float model, the same images flipped (each one named); mean and max |Δ probability| within
    `tolerance`, plus one int8 SOFTMAX step where the model's rule allows it (see ScoreRule).
    The emulated report must label itself (emulation_label_problems). Latency is never compared."""
    if "failed" in host or "failed" in arm:
        return [f"host {host.get('failed', 'ok')}; arm {arm.get('failed', 'ok')}"], "bench FAILED"
    from edgecls.bench.schema import read_report  # the reports as the toolkit reads them: schema, then records
    from edgecls.errors import EdgeclsError

    try:
        h, a = read_report(host["data"], "the host's bench.json"), read_report(arm["data"], "the arm bench.json")
    except EdgeclsError as exc:
        return [str(exc)], "bench DIFFERS"
    diffs = emulation_label_problems(a, arm.get("terminal", ""), arm.get("markdown", ""))
    if h.machine.emulated:
        diffs.append(f"the host's report says it was emulated ({h.machine.emulated})")
    diffs += [
        f"test images: {path}: host {hv!r}, arm {av!r}"
        for path, hv, av in json_differences(h.data.to_json(), a.data.to_json())
    ]
    if len(h.models) != len(a.models):
        diffs.append(f"models: host {[m.name for m in h.models]}, arm {[m.name for m in a.models]}")
    for slot, (hm, am) in enumerate(zip(h.models, a.models)):
        name = model_names[slot] if slot < len(model_names) else hm.name
        rule = rules[slot] if slot < len(rules) else ScoreRule(exact=False, tolerance=tolerance)
        diffs += [f"{name}: {line}" for line in _compare_bench_model(hm, am, tolerance + rule.softmax_step)]
    if diffs:
        return diffs, "bench DIFFERS"
    said = [f"{m.name} {m.accuracy.top1:.4f}" + (
        f" (agrees {m.vs_reference.agreement:.4f}, {len(m.vs_reference.flipped)} flipped)"
        if m.vs_reference else "") for m in h.models]
    profile = f" --device {arm['device']}" if arm.get("device") else ""
    return [], (f"bench{profile} on {h.data.images} images: top-1 {', '.join(said)}, same as host; "
                "latency labelled emulated")


def _compare_bench_model(host: ModelResult, arm: ModelResult, dprob_allowed: float) -> list[str]:
    from edgecls.records import as_json

    diffs = [f"{path}: host {hv!r}, arm {av!r}" for key in BENCH_MODEL_KEYS
             for path, hv, av in json_differences(as_json(getattr(host, key)), as_json(getattr(arm, key)), key)]
    hp, ap = host.vs_reference, arm.vs_reference
    if hp is None or ap is None:
        if (hp is None) != (ap is None):
            diffs.append(f"vs_reference: host {'none' if hp is None else hp.reference}, "
                         f"arm {'none' if ap is None else ap.reference}")
        return diffs
    diffs += [f"vs_reference.{path}: host {hv!r}, arm {av!r}" for key in BENCH_PAIRED_KEYS
              for path, hv, av in json_differences(as_json(getattr(hp, key)), as_json(getattr(ap, key)), key)]
    for key in ("mean_abs_dprob", "max_abs_dprob"):
        hv, av = getattr(hp, key), getattr(ap, key)
        if abs(hv - av) > dprob_allowed:
            diffs.append(f"vs_reference.{key}: host {hv:.6g}, arm {av:.6g} "
                         f"(|diff| {abs(hv - av):.2g} > {dprob_allowed:.3g} allowed)")
    host_flips = {str(f.id): f for f in hp.flipped}
    arm_flips = {str(f.id): f for f in ap.flipped}
    reference = hp.reference
    for image in sorted(set(host_flips) | set(arm_flips)):
        hf, af = host_flips.get(image), arm_flips.get(image)
        if hf == af:
            continue
        said = {"host": hf, "arm": af}
        parts = [f"{side}: {reference} says {f.reference}, this model {f.model}" if f else
                 f"{side}: agrees with {reference}" for side, f in said.items()]
        true = (hf or af).true
        diffs.append(f"image {image} (true {true}), top-1 against the float model: " + "; ".join(parts))
    return diffs


def emulation_label_problems(report: BenchReport, terminal: str, markdown: str) -> list[str]:
    """How an emulated bench report fails to say so: its JSON (machine.emulated, device.is_device,
    a device note) and its rendered table and Markdown must all tell that its latency is not a
    device figure. Empty: labelled."""
    problems = []
    if not report.machine.emulated:
        problems.append("machine.emulated is not set: the report does not say it was measured under emulation")
    device = report.device
    if device.is_device is not False:
        problems.append(f"device.is_device is {device.is_device!r}: emulated latency offered as a device figure")
    if not any(NOT_A_DEVICE_FIGURE in note for note in device.notes):
        problems.append(f"device.notes never say the latency is {NOT_A_DEVICE_FIGURE!r}")
    for what, text in (("terminal table", terminal), ("Markdown report", markdown)):
        flat = " ".join(text.split())  # the table's caption is wrapped at the console width
        if "emulat" not in flat.lower() or NOT_A_DEVICE_FIGURE not in flat:
            problems.append(f"the {what} does not say it was emulated and {NOT_A_DEVICE_FIGURE!r}")
    return problems


def compare_sides(host: dict, arm: dict, model_names: list[str], rules: list[ScoreRule], images: ImageSet,
                  tolerance: float = DEFAULT_TOLERANCE) -> tuple[dict[str, list[str]], list[str]]:
    """({section: difference lines}, summary parts) of one emulated core against the host;
    a section is "doctor", "info MODEL", "predict MODEL", "preprocess" or "bench"."""
    diffs = {"doctor": compare_doctor(host["doctor"], arm["doctor"])}
    summary = ["doctor ok" if not diffs["doctor"] else "doctor DIFFERS"]
    info_same = 0
    for slot, name in enumerate(model_names):
        found = diffs[f"info {name}"] = compare_info(host["info"][slot], arm["info"][slot])
        info_same += not found
    summary.append(f"info {info_same}/{len(model_names)} same")
    for slot, name in enumerate(model_names):
        found, stats = compare_predict(host["predict"][slot], arm["predict"][slot], rules[slot], images.short)
        diffs[f"predict {name}"] = found
        if stats:
            if not rules[slot].exact:
                how = f"max |diff| {stats['max_diff']:.1e}"
            elif stats["softmax_steps"]:
                steps = stats["softmax_steps"]
                named = ", ".join(steps[:3]) + (", ..." if len(steps) > 3 else "")
                how = f"{len(steps)} one int8 SOFTMAX step apart ({named}), the rest identical"
            else:
                how = "identical"
            summary.append(f"{name} {stats['same']}/{stats['rows']} same" + (f" ({how})" if not found else ""))
    found, stats = compare_preprocess(host["preprocess"], arm["preprocess"], host["preprocess_arrays"],
                                      arm["preprocess_arrays"], images.short)
    diffs["preprocess"] = found
    if stats:
        summary.append(f"preprocess {stats['same']}/{stats['total']} tensors identical")
        host_libs, arm_libs = stats["libs"]
        if host_libs != arm_libs:
            summary.append(f"(codecs: host {host_libs}, arm {arm_libs})")
    if "bench" in host:
        diffs["bench"], said = compare_bench(host["bench"], arm.get("bench", {"failed": "not run"}), model_names,
                                             rules, tolerance)
        summary.append(said)
    if "serve" in host:
        found = diffs["serve"] = compare_serve(host["serve"], arm.get("serve", {"failed": "not run"}), rules[-1],
                                               images.short)
        summary.append(f"serve {model_names[-1]} over HTTP " + ("same as host" if not found else "DIFFERS"))
    return {section: lines for section, lines in diffs.items() if lines}, summary


# =============================================================================================
# The check
# =============================================================================================
def resolve_cpus(names: str) -> list[str]:
    """Cores by qemu name, or device profiles by name (devices/NAME.toml's qemu_cpu)."""
    import tomllib

    cpus = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        profile = REPO / "devices" / f"{name}.toml"
        if profile.is_file():
            qemu_cpu = tomllib.loads(profile.read_text()).get("qemu_cpu")
            if not qemu_cpu:
                raise UsageError(f"device profile {profile} has no qemu_cpu")
            name = qemu_cpu
        if name == "max":
            raise UsageError("-cpu max is refused: it is no real core (and gave wrong int8 results on qemu 7.2); "
                             "name a Pi's core, e.g. cortex-a53, cortex-a72, cortex-a76")
        if name not in cpus:
            cpus.append(name)
    if not cpus:
        raise UsageError("--cpu names no core")
    return cpus


def split_paths(values: list[str] | None) -> list[Path]:
    return [Path(p).expanduser() for value in values or [] for p in value.split(",") if p]


def _check_models(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    """(--models, --arm-models), each file present and as many of one as of the other."""
    models = split_paths(args.models) or list(DEFAULT_MODELS)
    arm_models = split_paths(args.arm_models) or models
    for model in set(models + arm_models):
        if not model.is_file():
            hint = " (the reference models are made by the toolkit: pass --models)" if model in DEFAULT_MODELS else ""
            raise UsageError(f"no such model: {model}{hint}")
    if len(arm_models) != len(models):
        raise UsageError(f"--arm-models gives {len(arm_models)} models for {len(models)} --models")
    return models, arm_models


def _check_cpus(cache: Cache, cpus: list[str]) -> None:
    known = [cpu for cpu in valid_cpus(cache) if cpu != "max"]
    unknown = [cpu for cpu in cpus if cpu not in known]
    if unknown:
        raise UsageError(f"qemu-aarch64 has no core {', '.join(unknown)}: use one of {', '.join(known)}")


def _gather_images(args: argparse.Namespace, cache: Cache, host: Side) -> tuple[ImageSet, BenchImages]:
    """The images predict compares, and the labelled ones bench runs on (added to predict's too)."""
    shared = Path(args.shared_data) if args.shared_data else None
    shared = shared if shared and shared.is_dir() else None
    images = collect_images(cache, args.images, shared, args.max_real, not args.no_generated)
    if not images.files:
        raise UsageError("no images to check (no --images, no shared data, --no-generated)")
    bench = (BenchImages(None, "--no-bench") if args.no_bench else
             bench_images(host, host.models[0], args.bench_data, cache.work / "images" / "bench"))
    if bench.folder is not None:  # predict compares their scores image by image too
        found = bench.files()
        images.files += found
        images.groups["bench test images"] = len(found)
        images.roots.append(bench.folder.parent)
    return images, bench


def _announce(args: argparse.Namespace, cpus: list[str], setup: dict, images: ImageSet, bench: BenchImages,
              models: list[Path], arm_models: list[Path]) -> None:
    say(f"arm64-check: edgecls device side on emulated aarch64 ({', '.join(cpus)}) vs this host "
        f"({platform.machine()}, Python {platform.python_version()}); {setup['qemu']}")
    say(f"  images: {len(images.files)} (" + ", ".join(f"{n} {what}" for what, n in images.groups.items()) + ")")
    if bench.folder is None:
        say(f"  bench: SKIPPED: {bench.why}")
    else:
        profiles = ", ".join(f"{cpu} --device {device_profile_for(cpu) or '(none)'}" for cpu in cpus)
        say(f"  bench: {images.groups['bench test images']} images in {images.short(bench.folder)}: {bench.why}; "
            f"host as itself, {profiles}")
    if args.arm_models:
        say(f"  NOTE: the emulated side runs {', '.join(m.name for m in arm_models)} in place of "
            f"{', '.join(m.name for m in models)} (--arm-models): it is expected to differ")


def _model_plan(args: argparse.Namespace, host: Side, names: list[str]) -> tuple[list, list[int], list]:
    """(score rules, top-k, input specs) of the models, from the host's `edgecls info`. The host
    goes first: it tells each model's input size, class count and kind, and fills the bytecode
    cache for the repo's own sources."""
    infos = [probe_json(host, ["-m", "edgecls", "info", "--json", m], f"info {m.name}") for m in host.models]
    for model, info in zip(host.models, infos):
        if "failed" in info:
            raise UsageError(f"the host cannot read {model}: {info['failed']}")
    rules = [ScoreRule.for_model(info["data"], args.tolerance, args.strict_int8) for info in infos]
    top_k = [max(1, int(info["data"]["classifier"].get("num_classes") or 1)) for info in infos]
    specs = sorted({(c["input"]["height"], c["input"]["width"], c["input"]["color"])
                    for c in (info["data"]["classifier"] for info in infos) if c.get("image_classifier")}
                   | set(EXTRA_SIZES))
    for name, info, rule in zip(names, infos, rules):
        say(f"  model {name} ({info['data']['quantization']['detected']}): {rule.describe()}")
    return rules, top_k, specs


def _check_host_ran(host_results: dict, names: list[str]) -> None:
    for slot, predicted in enumerate(host_results["predict"]):
        if "failed" in predicted:
            raise UsageError(f"the host cannot run predict on {names[slot]}: {predicted['failed']}")
    if "failed" in host_results.get("bench", {}):
        raise UsageError(f"the host cannot run bench: {host_results['bench']['failed']}")


def _say_verdicts(verdicts: dict[str, tuple[dict[str, list[str]], list[str], float]], args: argparse.Namespace,
                  bench: BenchImages) -> bool:
    """One line a core, then its differences; True when any core differs."""
    say()
    failed = False
    for cpu, (diffs, summary, _seconds) in verdicts.items():
        if bench.folder is None:
            summary.append(f"bench skipped ({'--no-bench' if args.no_bench else 'no labelled images'})")
        say(f"{cpu:<12} {'PASS' if not diffs else 'FAIL'}  " + " | ".join(summary))
        if diffs:
            failed = True
            say(f"  differences, host vs arm ({cpu}):")
            for section, lines in diffs.items():
                say(f"    {section}:")
                for line in lines[: args.max_diffs]:
                    say(f"      - {line}")
                if len(lines) > args.max_diffs:
                    say(f"      ... and {len(lines) - args.max_diffs} more (--max-diffs)")
    return failed


def _say_timings(started: float, setup: dict, host: Side, verdicts: dict, cache: Cache) -> None:
    run_seconds = time.perf_counter() - started - setup["seconds"]
    per_side = ", ".join([f"host {host.seconds:.1f} s"] + [f"{cpu} {v[2]:.1f} s" for cpu, v in verdicts.items()])
    say()
    built = f"built {', '.join(setup['built'])}" if setup["built"] else "all cached"
    say(f"set-up {setup['seconds']:.1f} s ({built}; building it from clean took "
        f"{setup['from_clean_seconds']:.0f} s) | cache {disk_used(cache.root) / 1e6:.0f} MB in "
        f"{cache.root} | run {run_seconds:.1f} s ({per_side}; emulated times are not device figures)")
    say(f"raw outputs: {cache.work / 'run'}")


def run_check(args: argparse.Namespace, cache: Cache, setup: dict, started: float) -> int:
    """The check: the host's answers, then each emulated core's, compared; a verdict a core."""
    models, arm_models = _check_models(args)
    cpus = resolve_cpus(args.cpu)
    _check_cpus(cache, cpus)

    host = host_side(cache)
    host.models = [m.resolve() for m in models]
    images, bench = _gather_images(args, cache, host)
    _announce(args, cpus, setup, images, bench, models, arm_models)
    names = [m.name for m in models]
    rules, top_k, specs = _model_plan(args, host, names)
    host_results = check_side(host, images, specs, top_k, args.threads, cache.work, bench)
    _check_host_ran(host_results, names)
    image = serve_image(host_results, len(names) - 1)
    host_results["serve"] = probe_serve(host, host.models[-1], image, args.threads)
    if "failed" in host_results["serve"]:
        raise UsageError(f"the host cannot run serve on {names[-1]}: {host_results['serve']['failed']}")

    verdicts: dict[str, tuple[dict[str, list[str]], list[str], float]] = {}
    for cpu in cpus:
        side = emulated_side(cache, cpu)
        side.models = [m.resolve() for m in arm_models]
        arm_results = check_side(side, images, specs, top_k, args.threads, cache.work, bench)
        arm_results["serve"] = probe_serve(side, side.models[-1], image, args.threads)
        diffs, summary = compare_sides(host_results, arm_results, names, rules, images, args.tolerance)
        verdicts[cpu] = (diffs, summary, side.seconds)

    failed = _say_verdicts(verdicts, args, bench)
    _say_timings(started, setup, host, verdicts, cache)
    say("RESULT: " + ("FAIL: the emulated device side differs from the host" if failed
                      else f"PASS on {', '.join(cpus)}"))
    return EXIT_DIFFERENT if failed else EXIT_OK


def run_python(args: argparse.Namespace, cache: Cache) -> int:
    """`scripts/arm64-check python -- ARGS`: the emulated Python with edgecls on its path."""
    side = emulated_side(cache, resolve_cpus(args.cpu)[0])
    return subprocess.call(side.python + args.argv, env=side.env)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/arm64-check", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check edgecls' device side on emulated Raspberry Pi cores (qemu-aarch64 user mode) "
                    "against this host.",
        epilog="commands: check (default) | setup (build the environment only) | "
               "python [--cpu CORE] -- ARGS (run the emulated Python)\n"
               "exit codes: 0 same; 1 differences; 2 bad arguments or host problem; 3 set-up impossible "
               "(downloads failed)")
    parser.add_argument("command", nargs="?", default="check", choices=("check", "setup", "python"))
    parser.add_argument("--cache", default=os.environ.get(CACHE_ENV) or str(REPO / ".cache/arm64"),
                        help=f"cache folder [${CACHE_ENV}, else .cache/arm64 in the repo]")
    parser.add_argument("--cpu", default=",".join(DEFAULT_CPUS),
                        help="comma list of qemu cores or device profiles (devices/NAME.toml) [%(default)s]")
    parser.add_argument("--models", action="append",
                        help="models to check, comma list or repeated [models/digits-seed/model_{float32,int8}.tflite]")
    parser.add_argument("--arm-models", action="append",
                        help="run these on the emulated side instead, paired with --models by position "
                             "(to show that the check catches a difference)")
    parser.add_argument("--images", action="append", default=[],
                        help="image files or folders, replacing the real images from the shared data")
    parser.add_argument("--shared-data", default=os.environ.get(SHARED_ENV) or str(REPO.parent / "shared/data"),
                        help=f"where catsdogs/ and mnist/ are [${SHARED_ENV}, else ../shared/data]")
    parser.add_argument("--max-real", type=int, default=8, help="real images per source (per class) [%(default)s]")
    parser.add_argument("--no-generated", action="store_true", help="leave out the generated images")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="largest score difference for float models [%(default)g]")
    parser.add_argument("--strict-int8", action="store_true",
                        help="integer models bit-identical, even after an int8 SOFTMAX (aarch64 has its own kernel)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="interpreter threads for predict [%(default)s] (bench: 1)")
    parser.add_argument("--no-bench", action="store_true", help="leave out `edgecls bench` (about 8 s a core)")
    parser.add_argument("--bench-data", metavar="DIR",
                        help="labelled images for the bench, a folder of class sub-folders [MODEL_DIR/test-images, "
                             f"else made from the model's run: {BENCH_PER_CLASS} held-out test images per class]")
    parser.add_argument("--max-diffs", type=int, default=12, help="differences shown per section [%(default)s]")
    parser.add_argument("--refresh", action="store_true", help="rebuild the whole environment")
    parser.add_argument("--smoke", action="store_true",
                        help="the check, small: one core, one real image per source, no generated images, no bench "
                             "(seconds once the environment is built; building it downloads ~290 MB)")
    python_argv = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if python_argv and args.command != "python":
        parser.error("arguments after -- are for the python command")
    args.argv = python_argv
    if args.smoke:
        args.cpu, args.max_real, args.no_generated, args.no_bench = DEFAULT_CPUS[0], 1, True, True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cache = Cache(Path(args.cache).resolve())
    started = time.perf_counter()
    try:
        with environment(cache, args.refresh) as setup:
            if args.command == "setup":
                say(f"ready: {setup['qemu']}; {len(setup['pins'])} packages; set-up {setup['seconds']:.1f} s; "
                    f"cache {disk_used(cache.root) / 1e6:.0f} MB in {cache.root}")
                return EXIT_OK
            with cache.own_run():
                if args.command == "python":
                    return run_python(args, cache)
                return run_check(args, cache, setup, started)
    except SetupError as exc:
        say(f"arm64-check: cannot set up the emulated environment: {exc}")
        return EXIT_SETUP
    except UsageError as exc:
        say(f"arm64-check: error: {exc}")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
