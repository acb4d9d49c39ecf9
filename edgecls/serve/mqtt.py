"""`--mqtt mqtt[s]://HOST[:PORT]/TOPIC`: live predictions published to an MQTT broker (paho-mqtt).

Topics (TOPIC is the URL's path):
    TOPIC          each live prediction (or, with --on-change, each change of the stable class): the JSON
                   document of edgecls.serve.events (prediction.schema.json), QoS 0, retained (a client that
                   subscribes later, Home Assistant after a restart, gets the current state at once)
    TOPIC/status   "online" or "offline", QoS 1, retained; the broker publishes "offline" by itself (the
                   MQTT last will) when the server vanishes without saying goodbye

Policy while the broker is away: classification never waits for it. paho's network thread reconnects
with back-off (RECONNECT_MIN_S doubling to RECONNECT_MAX_S); meanwhile predictions are dropped (and
counted), not queued, and once it is back the newest one is published again (retained): the broker
holds the current state, not a backlog. Connected, at most MAX_PENDING messages wait to be written to
the socket (a stalled network); one more is dropped.

Credentials never come from the URL (`ps` shows a command line to every user): --mqtt-credentials FILE
(one line, USER:PASSWORD) or $EDGECLS_MQTT_USERNAME and $EDGECLS_MQTT_PASSWORD. mqtts:// is TLS with the
system's CAs, or --mqtt-ca PEM for your own.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from edgecls.errors import EdgeclsError
from edgecls.files import read_capped
from edgecls.serve.options import MQTT_PASSWORD_ENV, MQTT_USERNAME_ENV, MqttOptions

RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
KEEPALIVE_S = 30  # a broker gone without a word is noticed after 1.5 times this
MAX_PENDING = 64  # QoS 0 messages accepted but not yet written to the socket
STOP_WAIT_S = 2.0  # at shutdown, how long "offline" gets to reach the broker
ONLINE, OFFLINE = "online", "offline"
MAX_CREDENTIALS_BYTES = 4096
INSTALL = "pip install 'edgecls[serve]' (it has paho-mqtt)"


def read_credentials(options: MqttOptions) -> tuple[tuple[str, str | None] | None, list[str]]:
    """((username, password) or None, warnings): from --mqtt-credentials (USER:PASSWORD on one line),
    else the environment; a one-line EdgeclsError for a file that is not one."""
    path = options.credentials_file
    if path is None:
        username = os.environ.get(MQTT_USERNAME_ENV)
        if not username:
            return None, []
        return (username, os.environ.get(MQTT_PASSWORD_ENV)), []
    try:
        text = read_capped(path, MAX_CREDENTIALS_BYTES).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeclsError(f"--mqtt-credentials {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") \
            from None
    username, colon, password = text.partition(":")
    if not username or not colon or "\n" in text:
        raise EdgeclsError(f"--mqtt-credentials {path}: write one line, USER:PASSWORD")
    warnings = []
    if os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(f"the MQTT credentials file {path} is readable by other users: chmod 600 it")
    return (username, password), warnings


class MqttMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.connected = Gauge("edgecls_mqtt_connected", "1 while the MQTT broker is connected", registry=registry)
        self.messages = Counter("edgecls_mqtt_messages", "Live predictions for MQTT: sent, or dropped (the broker "
                                "was away, or too many waited for the network)", ("outcome",), registry=registry)
        self.connects = Counter("edgecls_mqtt_connects", "Connections made to the MQTT broker", registry=registry)


class MqttPublisher:
    """One paho client: connects in the background, publishes without ever blocking the caller."""

    def __init__(self, options: MqttOptions, registry: CollectorRegistry, log: Callable[[str], None]):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise EdgeclsError(f"--mqtt needs paho-mqtt, which is not installed here: {INSTALL}") from None
        self.options = options
        self.scheme, self.host, self.port, self.topic = options.parts
        self.log = log
        self.metrics = MqttMetrics(registry)
        self.connected = False
        self._latest: str | None = None  # republished (retained) at every connection
        self._pending: deque[Any] = deque()  # MQTTMessageInfo of QoS 0 messages not yet written
        self._lock = threading.Lock()
        self._was_down = False
        self._complained = False  # one line for a broker that cannot be reached or refuses us, not one per retry
        self._stopping = False
        credentials, warnings = read_credentials(options)
        for warning in warnings:
            log(f"warning: {warning}")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311, clean_session=True,
                             client_id=f"edgecls-{socket.gethostname()}-{os.getpid()}")
        if credentials is not None:
            client.username_pw_set(*credentials)
        if options.tls:
            try:
                client.tls_set(ca_certs=None if options.ca_file is None else str(options.ca_file))
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise EdgeclsError(f"--mqtt-ca {options.ca_file}: {exc}") from None
        client.will_set(options.status_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_queued_messages_set(MAX_PENDING)  # QoS 1 (the status) waiting for a connection
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        self.client = client

    @property
    def where(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def state(self) -> dict[str, Any]:
        """For GET /v1/live: where, and whether the broker is connected now."""
        return {"broker": self.where, "topic": self.topic, "status_topic": self.options.status_topic,
                "connected": self.connected}

    def start(self) -> None:
        """Connect in paho's thread (a broker that is down now is retried with back-off)."""
        self.client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        self.log(f"mqtt: publishing to {self.where} topic {self.topic} (status on {self.options.status_topic})")

    def publish(self, payload: str) -> None:
        """Publish one prediction (retained, QoS 0), or drop it when the broker is away or the network stalls."""
        with self._lock:
            self._latest = payload
            while self._pending and self._pending[0].is_published():
                self._pending.popleft()
            if not self.connected or len(self._pending) >= MAX_PENDING:
                self.metrics.messages.labels("dropped").inc()
                return
            info = self.client.publish(self.topic, payload, qos=0, retain=True)
            if info.rc != 0:  # not connected after all (a race with the network thread)
                self.metrics.messages.labels("dropped").inc()
                return
            self._pending.append(info)
        self.metrics.messages.labels("sent").inc()

    def stop(self) -> None:
        """Say "offline" (retained), disconnect cleanly (no last will then), stop paho's thread."""
        self._stopping = True
        if self.connected:
            info = self.client.publish(self.options.status_topic, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(STOP_WAIT_S)
            except (RuntimeError, ValueError):  # the connection went in between
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self.metrics.connected.set(0)

    # ---------------------------------------------------------------- paho's thread
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            if not self._complained:
                self._complained = True
                self.log(f"mqtt: {self.where} refused the connection: {reason} (retrying with back-off, up to "
                         f"{RECONNECT_MAX_S} s apart)")
            return
        with self._lock:
            self.connected = True
            self._pending.clear()
            client.publish(self.options.status_topic, ONLINE, qos=1, retain=True)
            if self._latest is not None:  # the current state, not the backlog
                self._pending.append(client.publish(self.topic, self._latest, qos=0, retain=True))
        self._complained = False
        self.metrics.connected.set(1)
        self.metrics.connects.inc()
        self.log(f"mqtt: {'reconnected to' if self._was_down else 'connected to'} {self.where}")

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        if not self._complained:
            self._complained = True
            self.log(f"mqtt: cannot reach {self.where}; retrying with back-off (up to {RECONNECT_MAX_S} s apart), "
                     "predictions dropped until it answers")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            was = self.connected
            self.connected = False
            self._pending.clear()
        self.metrics.connected.set(0)
        if was and not self._stopping:
            self._was_down = True
            self.log(f"mqtt: lost {self.where} ({reason}); reconnecting with back-off, predictions dropped until "
                     "it is back")
