"""Hosts files (/etc/hosts format) as a registry source."""
