"""Forwarding: the private-reverse, cache and forward stages, the upstream table, pool health and
transport.
"""
