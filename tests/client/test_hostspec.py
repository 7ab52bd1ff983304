"""HOST arguments: names, addresses and ports parse to a HostSpec or fail with a readable message."""

from __future__ import annotations

import re

import pytest

from ssd.client import HostSpec, parse_host
from ssd.client.hostspec import DEFAULT_PORT


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("gpu-box", "gpu-box", DEFAULT_PORT),
        ("  GPU-Box.lab.example  ", "gpu-box.lab.example", DEFAULT_PORT),
        ("gpu-box:9000", "gpu-box", 9000),
        ("10.0.0.7:9470", "10.0.0.7", 9470),
        ("192.168.1.2", "192.168.1.2", DEFAULT_PORT),
        ("[::1]:9000", "::1", 9000),
        ("[fe80::1]", "fe80::1", DEFAULT_PORT),
        ("::1", "::1", DEFAULT_PORT),
        ("2001:DB8::5", "2001:db8::5", DEFAULT_PORT),
        ("box:65533", "box", 65533),
        ("box:1", "box", 1),
    ],
)
def test_parse_host_accepts(text: str, host: str, port: int) -> None:
    """Names, name:port, IPv4:port, [IPv6]:port and bare IPv6 parse to host and port."""
    spec = parse_host(text)
    assert spec == HostSpec(host, port)
    assert spec.key_port == port + 2


def test_host_spec_brackets_ipv6_in_keys_and_endpoints() -> None:
    """IPv6 hosts are bracketed in the known-hosts key and in ZeroMQ endpoints."""
    spec = parse_host("[::1]:9000")
    assert spec.key == str(spec) == "[::1]:9000"
    assert spec.endpoint() == "tcp://[::1]:9000"
    assert spec.endpoint(spec.key_port) == "tcp://[::1]:9002"
    assert parse_host("box:9000").endpoint() == "tcp://box:9000"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("box:http", "port must be a number"),
        ("box:0", "port must be a number"),
        ("box:65534", "from 1 to 65533"),
        ("box:99999", "from 1 to 65533"),
        ("box:-5", "port must be a number"),
        ("[::1", "unclosed ["),
        ("[]:9000", "unclosed ["),
        ("[::1]9000", "expected ]:PORT"),
        ("[::1]:x", "port must be a number"),
        (":9000", "not a host name or address"),
        ("user@box", "not a host name or address"),
        ("box/path", "not a host name or address"),
        ("two words", "not a host name or address"),
    ],
)
def test_parse_host_rejects_with_readable_message(text: str, says: str) -> None:
    """Bad HOST arguments raise ValueError naming the input and what is wrong."""
    with pytest.raises(ValueError, match=re.escape(says)) as info:
        parse_host(text)
    if text.strip():
        assert repr(text.strip()) in str(info.value)
