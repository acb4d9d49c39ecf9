"""A real MQTT broker for the tests: Debian's mosquitto on 127.0.0.1 (a free port, a config file the test
writes), and a real paho subscriber that collects what it receives and reconnects as an MQTT client does."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT_S = 30.0  # a loaded machine can take its time


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Mosquitto:
    """`mosquitto -c FOLDER/mosquitto.conf`: one listener on 127.0.0.1:port (anonymous unless `config`
    says otherwise), no persistence. stop() and start() again keep the port: a broker restarted."""

    def __init__(self, folder: Path, config: str = "allow_anonymous true\n", port: int | None = None):
        self.folder = folder
        self.port = port or free_port()
        self.config = folder / "mosquitto.conf"
        # Started as root, mosquitto would become user `mosquitto`, who cannot read the test's private folders.
        stay = "user root\n" if os.geteuid() == 0 else ""
        self.config.write_text(f"listener {self.port} 127.0.0.1\npersistence false\nlog_dest stderr\n{stay}{config}")
        self.log_path = folder / "mosquitto.log"
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() when received

    def json(self) -> dict:
        return json.loads(self.payload)


class Subscriber:
    """A paho client subscribed to `topic` (a filter: 'edgecls/#'), collecting every message; it
    reconnects on its own (a broker restarted) and subscribes again."""

    def __init__(self, port: int, topic: str, ca: Path | None = None, credentials: tuple[str, str] | None = None):
        self.messages: list[Message] = []
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        if credentials is not None:
            self.client.username_pw_set(*credentials)
        self.client.reconnect_delay_set(1, 2)

        def on_connect(client, userdata, flags, reason, properties):
            client.subscribe(topic, qos=1)
            self.connected.set()

        def on_disconnect(client, userdata, flags, reason, properties):
            self.connected.clear()

        def on_message(client, userdata, message):
            with self._lock:
                self.messages.append(Message(message.topic, message.payload, bool(message.retain), time.monotonic()))

        self.client.on_connect, self.client.on_disconnect, self.client.on_message = on_connect, on_disconnect, \
            on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(START_TIMEOUT_S):
            raise RuntimeError("the test subscriber could not connect")

    def on(self, topic: str, since: float = 0.0) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic and m.at >= since]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
