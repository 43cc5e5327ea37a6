"""MQTT source: paho-mqtt 2.x with manual acknowledgement.

QoS 1, persistent session (MQTT 5 session expiry / 3.1.1 clean_session=False) and PUBACK only after
the pipeline reports the message durable, so a crash or outage redelivers instead of losing. With MQTT 5
the client's Receive Maximum lets the broker keep a whole batch in flight while it is made durable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from anxin.metrics import Metrics
from gateway.pipeline import Pipeline

log = logging.getLogger(__name__)


class MqttSource:
    def __init__(
        self,
        pipeline: Pipeline,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        client_id: str,
        subscriptions: list[str],
        protocol: str = "5",
        shared_group: str = "",
        username: str | None = None,
        password: str | None = None,
        receive_maximum: int = 20000,
        session_expiry_s: int = 7 * 24 * 3600,
        keepalive: int = 30,
    ) -> None:
        self._pipeline = pipeline
        self._metrics = metrics
        self._host, self._port, self._keepalive = host, port, keepalive
        self._v5 = protocol == "5"
        self._topics = [f"$share/{shared_group}/{t}" if shared_group else t for t in subscriptions]
        self._receive_maximum = receive_maximum
        self._session_expiry = session_expiry_s
        self._generation = 0  # bumped per connection; acks from an older connection are dropped
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # set once the broker granted the subscriptions
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else False,
            manual_ack=True,
        )
        if username:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    def start(self) -> None:
        props: Properties | None = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._session_expiry
            props.ReceiveMaximum = self._receive_maximum
            self._client.connect_async(self._host, self._port, self._keepalive, clean_start=False, properties=props)
        else:
            self._client.connect_async(self._host, self._port, self._keepalive)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connect to %s:%s refused: %s", self._host, self._port, reason)
            return
        self._generation += 1
        log.info("MQTT connected to %s:%s (session present: %s)", self._host, self._port, flags.session_present)
        if self._v5:
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in self._topics])
        else:
            client.subscribe([(t, 1) for t in self._topics])
        self._metrics.inc("anxin_mqtt_connects_total")
        self.connected.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("MQTT subscription refused: %s", failed)
            return
        self.subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        log.warning("MQTT disconnected: %s", reason)

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._pipeline.submit(msg.topic, cast(bytes, msg.payload), self._acker(client, msg), source="mqtt")

    def _acker(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> Callable[[], None] | None:
        if msg.qos == 0:
            return None
        mid, qos, generation = msg.mid, msg.qos, self._generation

        def ack() -> None:
            # After a reconnect the broker resends unacked messages; their ids may be reused, so an ack
            # for the old connection would confirm the wrong message. The resent copy gets its own ack.
            if generation == self._generation:
                client.ack(mid, qos)

        return ack
