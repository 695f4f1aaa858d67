"""A unix-socket relay in front of the Docker socket, so a test can take "the engine" away from a
dockdns and give it back without touching the shared engine itself."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path


class UnixRelay:
    """Relays every connection on ``path`` to the unix socket ``target``.

    ``stop()`` closes the listening socket and cuts every open connection (a dockdns then sees
    its engine vanish, event stream included); ``start()`` listens again on the same path.
    ``hold()`` makes it accept connections but pass nothing on (an engine that hangs) until
    ``release()``.
    """

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._gate = threading.Event()  # set: connections are relayed; clear: they wait
        self._gate.set()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(32)
        listener.settimeout(0.2)  # the accept loop checks for stop() this often
        self._listener = listener
        self._stopped.clear()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self._open.add(client)
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        self._gate.wait()  # what the client sends meanwhile waits in its socket buffer
        if self._stopped.is_set():
            client.close()
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.target)
        except OSError:
            client.close()
            upstream.close()
            return
        with self._lock:
            self._open.add(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopped.set()
        self._gate.set()  # held connections end too
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            connections, self._open = self._open, set()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
