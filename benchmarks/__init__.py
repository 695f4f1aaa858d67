"""Side-by-side benchmarks of dockdns against dnsmasq and Docker's embedded DNS (dnsperf)."""
