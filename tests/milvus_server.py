"""A real Milvus standalone server for tests and benchmarks, reachable on 127.0.0.1 only.

The PyPI package ``milvus`` ships the Milvus 2.3 standalone binary (``milvus-server``). Its
gRPC and HTTP listeners bind every interface (``*:19530``, ``*:9091``, ...) whatever its
config says, so it runs in a private network namespace (``unshare -n``) whose only interface
is loopback. A unix socket (not network-namespaced) bridges the two sides: inside the
namespace :func:`serve_unix` forwards the socket to the server's port; outside,
:class:`Bridge` listens on 127.0.0.1 and forwards to the socket.

``python3 tests/milvus_server.py DATA_DIR`` runs one by hand and prints its uri.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

MILVUS_PORT = 19530
STARTUP_SECONDS = 240  # about 40 s on an idle machine; much more on a loaded one


def server_command() -> str | None:
    """``milvus-server``: beside this Python (a virtualenv's bin, which `make test` does not put
    on PATH), else on PATH."""
    beside = Path(sys.executable).parent / "milvus-server"
    return str(beside) if beside.exists() else shutil.which("milvus-server")


def available() -> str | None:
    """Why a server cannot be started here (None when it can)."""
    if server_command() is None:
        return "milvus-server is not installed (pip install -e '.[milvus]')"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install util-linux iproute2)"
    return None


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _forward(listener: socket.socket, connect) -> None:
    """Accept forever; each connection is piped both ways to a new ``connect()`` socket."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = connect()
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def serve_unix(sock_path: str, port: int) -> None:
    """Inside the namespace: forward connections on ``sock_path`` to 127.0.0.1:``port``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(64)
    _forward(listener, lambda: socket.create_connection(("127.0.0.1", port)))


class Bridge:
    """Outside: 127.0.0.1:<free port> → the unix socket."""

    def __init__(self, sock_path: str):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]

        def connect() -> socket.socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            return s

        threading.Thread(target=_forward, args=(self.listener, connect), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class MilvusServer:
    """``with MilvusServer(data_dir) as uri:`` a started server, stopped on exit."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.proc: subprocess.Popen | None = None
        self.bridge: Bridge | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.bridge.port}"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        sock = str(self.data_dir / "milvus.sock")
        Path(sock).unlink(missing_ok=True)
        log = open(self.data_dir / "server.log", "wb")
        unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
        inner = (f"ip link set lo up && {sys.executable} {__file__} --unix {sock} {MILVUS_PORT} & "
                 f"exec {server_command()} --data {self.data_dir / 'milvus'}")
        self.proc = subprocess.Popen([*unshare, "sh", "-c", inner], stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        self.bridge = Bridge(sock)
        self._wait()
        return self.uri

    def _wait(self) -> None:
        from pymilvus import MilvusClient
        deadline = time.monotonic() + STARTUP_SECONDS
        error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"milvus-server exited ({self.proc.returncode}); see "
                                   f"{self.data_dir / 'server.log'}")
            try:
                client = MilvusClient(uri=self.uri, timeout=5)
                client.list_collections()
                client.close()
                return
            except Exception as exc:  # not up yet: connection refused, still initialising
                error = exc
                time.sleep(2)
        self.stop()
        raise TimeoutError(f"milvus-server not ready after {STARTUP_SECONDS} s ({error})")

    def stop(self) -> None:
        if self.bridge is not None:
            self.bridge.close()
        if self.proc is None:
            return
        # The whole session: the shell's exec'd wrapper, the server binary it started (which
        # outlives the wrapper for a while on SIGTERM), the socket forwarder.
        group = self.proc.pid
        for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(group):
                self.proc.poll()
                time.sleep(0.2)
            if not _alive(group):
                break
        self.proc.poll()
        self.proc = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    if sys.argv[1] == "--unix":
        serve_unix(sys.argv[2], int(sys.argv[3]))
    else:
        with MilvusServer(Path(sys.argv[1])) as uri:
            print(uri, flush=True)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
