"""Serving: the UDP and TCP listeners, batched socket I/O, binding, rate limiting, TCP framing."""
