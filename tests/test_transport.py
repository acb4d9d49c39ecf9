"""edgecls.transport: device names, ssh failures as one line, and the bounded fleet fan-out.
(The ssh round trips themselves run against a real sshd in test_remote.py and test_target.py.)"""

from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path

import pytest

from edgecls.errors import EdgeclsError
from edgecls.transport import Target, explain, fan_out, parse_targets
from edgecls.transport.fleet import as_finished


@pytest.mark.parametrize("spec", ["-oProxyCommand=touch x", "host;rm", "a b", "user@", "host:99999"])
def test_a_target_that_is_not_user_at_host_port_is_refused(spec):
    with pytest.raises(EdgeclsError, match="is not|no valid port"):
        parse_targets(spec)


def test_targets_from_a_list_and_a_hosts_file(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# the lab\npi@pi5.local\npi4:2222  # upstairs\n\n")
    assert [(t.destination, t.port) for t in parse_targets(f"@{hosts}")] == [("pi@pi5.local", None), ("pi4", 2222)]
    assert [t.destination for t in parse_targets("a,b@c")] == ["a", "b@c"]


def test_ssh_failures_become_one_line_causes():
    target = Target("pi", "pi", None)
    assert "unreachable" in explain(target, "probe", 255, "ssh: connect to host pi port 22: Connection refused\n")
    assert "authentication refused" in explain(target, "probe", 255, "pi@pi: Permission denied (publickey).\n")
    assert "dropped" in explain(target, "running the bench", 255, "Connection to pi closed by remote host.\n")
    assert "disk full" in explain(target, "making the venv", 4, "OSError: [Errno 28] No space left on device\n")


def test_fan_out_keeps_the_order_and_never_runs_more_than_parallel_at_once():
    lock = threading.Lock()
    running, most = [0], [0]

    def work(n: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return n * n

    assert fan_out(list(range(12)), work, parallel=3) == [n * n for n in range(12)]
    assert most[0] == 3  # bounded, and really parallel
    most[0] = 0
    fan_out(list(range(5)), work, parallel=1)
    assert most[0] == 1


def test_as_finished_gives_each_answer_when_it_comes_with_its_index():
    """What deploy streams: a slow first server does not hold back the others' lines."""
    def work(n: int) -> int:
        time.sleep(0.3 if n == 0 else 0.0)
        return n * n

    done = list(as_finished([0, 1, 2], work, parallel=3))
    assert sorted(done) == [(0, 0), (1, 1), (2, 4)]
    assert done[-1] == (0, 0)  # the slow one last, not first


def test_a_parallel_below_one_is_refused():
    with pytest.raises(EdgeclsError, match="--parallel must be between 1 and 256"):
        fan_out([1, 2], lambda n: n, parallel=0)


@pytest.mark.slow  # one real `pip wheel` (seconds)
def test_the_device_wheel_is_built_once_per_source_and_taken_from_the_cache_after(tmp_path, monkeypatch):
    """Every bench --remote and export --target built the edgecls wheel again (pip wheel, ~5 s), even for a
    device whose venv was ready. The same files give the cached wheel; one changed file builds again."""
    import shutil
    import subprocess

    from edgecls.transport import device

    checkout, root = Path(__file__).resolve().parents[1], tmp_path / "checkout"
    for name in device.wheel_sources(checkout):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkout / name, root / name)
    (root / "edgecls" / "__pycache__").mkdir(exist_ok=True)
    (root / "edgecls" / "__pycache__" / "x.pyc").write_bytes(b"bytecode is not a source")
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    first = device.build_wheel(tmp_path / "build1", root)
    with zipfile.ZipFile(first) as packed:
        assert packed.read("edgecls/runtime/classify.py") == (checkout / "edgecls/runtime/classify.py").read_bytes()
        assert not any(name.endswith(".pyc") for name in packed.namelist())
    cached = list((tmp_path / "cache" / "wheels").glob("*/edgecls-*.whl"))
    assert len(cached) == 1 and cached[0].read_bytes() == first.read_bytes()

    def no_build(*args, **kwargs):
        raise AssertionError("pip wheel ran")

    monkeypatch.setattr(subprocess, "run", no_build)
    (root / "edgecls" / "__pycache__" / "x.pyc").write_bytes(b"other bytecode")  # not a source: still cached
    assert device.build_wheel(tmp_path / "build2", root) == cached[0]
    with (root / "edgecls" / "runtime" / "classify.py").open("a") as source:
        source.write("# changed\n")
    with pytest.raises(AssertionError, match="pip wheel ran"):
        device.build_wheel(tmp_path / "build3", root)


def test_a_damaged_cached_wheel_is_not_used_and_is_removed(tmp_path):
    """A cache entry cut short (a crash, a full disk) would have made every later run fail on a bad zip."""
    from edgecls.transport import device

    good, bad = tmp_path / "edgecls-0-py3-none-any.whl", tmp_path / "edgecls-1-py3-none-any.whl"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("edgecls/__init__.py", "x = 1\n" * 100)
    bad.write_bytes(good.read_bytes()[:-40])
    assert device._whole(good) and good.is_file()
    assert not device._whole(bad) and not bad.exists()
    assert not device._whole(tmp_path / "missing.whl")


def test_the_cache_is_where_the_environment_says_and_never_under_the_working_folder(tmp_path, monkeypatch):
    from edgecls.cache import cache_home

    monkeypatch.delenv("EDGECLS_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for xdg in ("", "relative/cache"):  # the XDG spec: ignored
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert cache_home() == tmp_path / "home" / ".cache" / "edgecls"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == tmp_path / "xdg" / "edgecls"
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "mine"))
    assert cache_home() == tmp_path / "mine"
