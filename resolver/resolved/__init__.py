"""systemd-resolved integration: dockdns registers itself as the DNS server of its own zones on a
link of its own, so every host program resolves container names through resolved's stub, and
forwards through that stub without ever looping back to itself (``integration.py`` is the one
entry point the daemon calls)."""
