"""Another process's UDP socket, duplicated into the test (pidfd_getfd(2), root): getsockopt
on the duplicate reads the daemon's own socket, and setsockopt changes it."""

from __future__ import annotations

import ctypes
import os
import socket

from benchmarks.capacity import server_socket

SYS_PIDFD_GETFD = 438  # the same number on every architecture (asm-generic/unistd.h)


def udp_socket_of(pid: int, port: int) -> socket.socket:
    """The UDP socket process ``pid`` listens on ``port`` with, duplicated."""
    row = server_socket([pid], port)
    assert row is not None, f"process {pid} holds no UDP socket on port {port}"
    target = next(int(fd) for fd in os.listdir(f"/proc/{pid}/fd")
                  if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{row.inode}]")
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, target, 0)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(pidfd)
    return socket.socket(fileno=fd)
