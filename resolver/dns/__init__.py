"""DNS wire format, pure: codes, query parsing, reply building, upstream message checks, reverse
names, addresses.
"""
