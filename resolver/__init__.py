"""dockdns: the DNS side (wire format, answers, forwarding, listeners, daemon, CLI)."""
