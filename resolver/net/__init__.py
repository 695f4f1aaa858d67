"""Batched datagram system calls (recvmmsg/sendmmsg), shared by the UDP listener and the
upstream transport."""
