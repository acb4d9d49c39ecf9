"""edgecls.transport: device names, ssh failures as one line, and the bounded fleet fan-out.
(The ssh round trips themselves run against a real sshd in test_remote.py and test_target.py.)"""

from __future__ import annotations

import threading
import time

import pytest

from edgecls.errors import EdgeclsError
from edgecls.transport import Target, explain, fan_out, parse_targets


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


def test_a_parallel_below_one_is_refused():
    with pytest.raises(EdgeclsError, match="--parallel must be between 1 and 256"):
        fan_out([1, 2], lambda n: n, parallel=0)
