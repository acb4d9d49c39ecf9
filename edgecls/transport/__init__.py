"""Reaching devices: the one transport every command that runs something on a device uses.

    from edgecls.transport import RemoteOptions, fan_out, make_kit, parse_targets, probe
    kit = make_kit(work / "kit", remote)                     # this checkout's wheel, the venv's key
    devices = fan_out(parse_targets(remote.targets), lambda t: probe(t, remote, kit), remote.parallel)
    devices[0].run_edgecls(payload, ["bench", ...], work / "back", say=print)
    device = connect("pi@pi5", remote, work)                 # one device: kit and probe in one call

Modules: targets (`[user@]host[:port]`, `@hosts.txt`), ssh (the OpenSSH client, fixed scripts,
tar streams, one-line causes), device (the kit, probe, upload, the device's venv, running
`python -m edgecls` there, download), fleet (`fan_out` with a bounded pool). Device side: no
TensorFlow, nothing of the workstation side.
"""

from edgecls.transport.device import Device, Kit, RemoteOptions, connect, make_kit, probe
from edgecls.transport.fleet import DEFAULT_PARALLEL, check_parallel, fan_out
from edgecls.transport.ssh import Ssh, explain
from edgecls.transport.targets import Target, parse_targets

__all__ = ["DEFAULT_PARALLEL", "Device", "Kit", "RemoteOptions", "Ssh", "Target", "check_parallel", "connect",
           "explain", "fan_out", "make_kit", "parse_targets", "probe"]
