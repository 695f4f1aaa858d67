"""Operations: metrics, query counters, HTTP endpoints, health, systemd notify, logs, privileges,
explain.
"""
