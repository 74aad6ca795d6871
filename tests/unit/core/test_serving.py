from __future__ import annotations

from ipaddress import IPv4Network

from relay.core.serving import ConnectionBook, client_key


def test_clients_are_counted_by_address_and_ipv6_clients_by_their_64() -> None:
    assert client_key("127.0.0.1") == "127.0.0.1"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("not an address") is None


def test_the_narrowest_network_override_sets_an_address_limit() -> None:
    book = ConnectionBook.of(
        3, [(IPv4Network("10.0.0.0/8"), 50), (IPv4Network("10.0.0.5/32"), 1000)]
    )
    assert book.limit_for("10.0.0.5") == 1000
    assert book.limit_for("::ffff:10.0.0.5") == 1000
    assert book.limit_for("10.1.2.3") == 50
    assert book.limit_for("192.0.2.1") == 3
