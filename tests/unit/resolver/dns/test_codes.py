"""Type and rcode names both ways, with RFC 3597's TYPE<n> for types no table names."""

from __future__ import annotations

from resolver.dns.codes import KNOWN_QTYPES, KNOWN_RCODES, qtype_code, qtype_name, rcode_name


def test_names() -> None:
    assert (qtype_name(1), qtype_name(28), qtype_name(65280)) == ("A", "AAAA", "TYPE65280")
    assert (rcode_name(0), rcode_name(3), rcode_name(4000)) == ("NOERROR", "NXDOMAIN",
                                                               "RCODE4000")


def test_codes() -> None:
    assert qtype_code(" aaaa ") == 28 and qtype_code("SRV") == 33
    assert qtype_code("type65") == 65 and qtype_code("TYPE65536") is None
    assert qtype_code("NOPE") is None and qtype_code("TYPEx") is None


def test_names_and_codes_agree() -> None:
    # Every name leads back to its code, 53 included: dnslib names it "HIP" (type 55's name),
    # which codes.py corrects to RFC 8162's SMIMEA.
    for code in KNOWN_QTYPES:
        assert qtype_code(qtype_name(code)) == code
    assert qtype_name(53) == "SMIMEA" and qtype_code("HIP") == 55
    assert {1, 28, 33, 255} <= KNOWN_QTYPES and 65280 not in KNOWN_QTYPES
    assert set(range(12)) <= KNOWN_RCODES and 16 in KNOWN_RCODES and 12 not in KNOWN_RCODES
