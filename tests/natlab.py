"""A NAT lab on top of :mod:`tests.netns`: a public core, a relay, and private hosts behind NAT routers.

Theory of operation
-------------------
:func:`nat_lab` builds this, inside one :class:`~tests.netns.Lab` (so it is always removed)::

      relay (10.1.0.2) ─── core ─── router_a (10.2.0.2) ─── host_a (192.168.1.2)
                             └───── router_b (10.3.0.2) ─── host_b (192.168.2.2)

``core`` is the "internet": it routes between the public /24s and knows nothing of the private
ones. Each router forwards, masquerades its private /24 behind its public address with nftables,
and drops inbound packets that belong to no connection it has seen leave, both those it would
forward and those addressed to itself (as home routers do): a peer behind it is unreachable until
it sends first, and an early inbound probe cannot claim the mapping (FACTS.md). ``kind`` picks the NAT behaviour:

* ``easy``: plain ``masquerade``: Linux keeps the source port when it can, so the mapping does not
  depend on the destination (endpoint-independent mapping); filtering is per remote address and
  port (conntrack), so hole punching works when both sides send;
* ``symmetric``: ``masquerade random``: a new random port per destination, so the port a peer
  learns from the relay is useless to anyone else and hole punching fails (FACTS.md).

:func:`blackhole` adds an nft rule on a router that drops one UDP flow (a path dying mid-transfer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tests.netns import Host, Lab

__all__ = ["NatLab", "blackhole", "nat_lab"]

RELAY_IP = "10.1.0.2"


@dataclass(frozen=True)
class NatLab:
    """The hosts of a NAT lab and their addresses."""

    lab: Lab
    core: Host
    relay: Host
    router_a: Host
    router_b: Host
    host_a: Host
    host_b: Host
    relay2: Host | None = None
    relay_ip: str = RELAY_IP
    relay2_ip: str = "10.4.0.2"
    public_a: str = "10.2.0.2"
    public_b: str = "10.3.0.2"
    private_a: str = "192.168.1.2"
    private_b: str = "192.168.2.2"


def _nat(router: Host, public_dev: str, private_net: str, kind: Literal["easy", "symmetric"]) -> None:
    masquerade = "masquerade random" if kind == "symmetric" else "masquerade"
    rules = f"""
table ip nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {private_net} oifname "{public_dev}" {masquerade}
    }}
}}
table inet filter {{
    chain input {{
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iifname "lo" accept
        ip saddr {private_net} accept
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ip saddr {private_net} accept
    }}
}}
"""
    router.run("nft", "-f", "-", input=rules, timeout=10)


def nat_lab(lab: Lab, kind: Literal["easy", "symmetric"] = "easy", *, second_relay: bool = False) -> NatLab:
    """Build the lab in ``lab`` (see the module docstring), with a second relay at 10.4.0.2 if asked."""
    core, relay = lab.host("core"), lab.host("relay")
    relay2 = lab.host("relay2") if second_relay else None
    if relay2 is not None:
        lab.link(core, relay2, "10.4.0.0/24")
        relay2.ip("route", "add", "default", "via", "10.4.0.1")
    router_a, router_b = lab.host("ra"), lab.host("rb")
    host_a, host_b = lab.host("ha"), lab.host("hb")
    lab.link(core, relay, "10.1.0.0/24")
    up_a = lab.link(core, router_a, "10.2.0.0/24")
    up_b = lab.link(core, router_b, "10.3.0.0/24")
    lab.link(router_a, host_a, "192.168.1.0/24")
    lab.link(router_b, host_b, "192.168.2.0/24")
    for host, gateway in ((relay, "10.1.0.1"), (router_a, "10.2.0.1"), (router_b, "10.3.0.1")):
        host.ip("route", "add", "default", "via", gateway)
    host_a.ip("route", "add", "default", "via", "192.168.1.1")
    host_b.ip("route", "add", "default", "via", "192.168.2.1")
    for router in (core, router_a, router_b):
        router.run("sysctl", "-qw", "net.ipv4.ip_forward=1", timeout=10)
    _nat(router_a, up_a.b_dev, "192.168.1.0/24", kind)
    _nat(router_b, up_b.b_dev, "192.168.2.0/24", kind)
    return NatLab(lab, core, relay, router_a, router_b, host_a, host_b, relay2)


def blackhole(router: Host, peer_ip: str) -> None:
    """Drop every packet the router forwards to or from ``peer_ip`` (the direct path dies; relays live)."""
    rules = f"""
table inet blackhole {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        ip daddr {peer_ip} drop
        ip saddr {peer_ip} drop
    }}
}}
"""
    router.run("nft", "-f", "-", input=rules, timeout=10)
