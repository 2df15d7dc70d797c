"""A real DNS server on 127.0.0.1 for outbound tests (dnslib, UDP and TCP on one port).

Serves only what a test puts in its Zone: MX, A, AAAA, PTR, TXT (long texts
split in 255-octet strings), SRV, TLSA, null MX (`MX 0 .`), SERVFAIL for
chosen names, answers flagged DNSSEC-validated (the AD bit a validating
resolver sets), and slow answers (the handler thread sleeps before
replying). A name the zone does not know is NXDOMAIN; a known name without
the asked type is an empty NOERROR answer (NODATA). Nothing is forwarded: no
query ever leaves the machine.

    zone = Zone()
    zone.mx("dest.test", (10, "mx1.dest.test"), (20, "mx2.dest.test"))
    zone.a("mx1.dest.test", "127.0.0.2")
    with DnsServer(zone) as dns:
        site dns_servers: [dns.address]   # "127.0.0.1:<port>"
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, MX, PTR, QTYPE, RCODE, RR, SRV, TLSA, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer


@dataclass
class Zone:
    """Records by (name, type); names are lower case without the final dot."""

    records: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    delays: dict[str, float] = field(default_factory=dict)
    validated: set[str] = field(default_factory=set)
    queries: list[tuple[str, str]] = field(default_factory=list)
    ttl: int = 60

    def _add(self, name: str, rtype: str, rdata: Any) -> None:
        name = name.lower().rstrip(".")
        self.names.add(name)
        self.records.setdefault((name, rtype), []).append(rdata)

    def mx(self, domain: str, *hosts: tuple[int, str]) -> None:
        for pref, host in hosts:
            self._add(domain, "MX", MX(host.rstrip(".") + ".", pref))

    def null_mx(self, domain: str) -> None:
        """RFC 7505: `MX 0 .`."""
        self._add(domain, "MX", MX(".", 0))

    def a(self, name: str, *ips: str) -> None:
        for ip in ips:
            self._add(name, "A", A(ip))

    def aaaa(self, name: str, *ips: str) -> None:
        for ip in ips:
            self._add(name, "AAAA", AAAA(ip))

    def ptr(self, ip: str, name: str) -> None:
        """Reverse DNS: the PTR record of an IPv4 address."""
        reverse = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
        self._add(reverse, "PTR", PTR(name.rstrip(".") + "."))

    def txt(self, name: str, text: str) -> None:
        """One TXT record; a text over 255 octets becomes several strings, as DNS requires."""
        raw = text.encode()
        chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
        self._add(name, "TXT", TXT(chunks))

    def srv(self, name: str, priority: int, weight: int, port: int, target: str) -> None:
        self._add(name, "SRV", SRV(priority, weight, port, target.rstrip(".") + "."))

    def tlsa(self, name: str, usage: int, selector: int, mtype: int, data: bytes) -> None:
        self._add(name, "TLSA", TLSA(usage, selector, mtype, data))

    def secure(self, name: str) -> None:
        """Answers for this name carry the AD bit (as from a DNSSEC-validating resolver)."""
        self.validated.add(name.lower().rstrip("."))

    def exists(self, name: str) -> None:
        """A name with no records at all (NODATA for every type)."""
        self.names.add(name.lower().rstrip("."))

    def servfail(self, name: str) -> None:
        self.failing.add(name.lower().rstrip("."))

    def slow(self, name: str, seconds: float) -> None:
        self.delays[name.lower().rstrip(".")] = seconds

    def heal(self, name: str) -> None:
        """Stop failing or delaying a name."""
        key = name.lower().rstrip(".")
        self.failing.discard(key)
        self.delays.pop(key, None)

    def asked(self, name: str) -> list[str]:
        """Types queried for a name, in order."""
        key = name.lower().rstrip(".")
        return [t for n, t in self.queries if n == key]


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: Zone, stop: threading.Event) -> None:
        self.zone = zone
        self.stop = stop

    def resolve(self, request: Any, handler: Any) -> Any:
        zone = self.zone
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        zone.queries.append((qname, qtype))
        delay = zone.delays.get(qname)
        if delay:
            self.stop.wait(delay)  # wakes early when the server stops
        if qname in zone.failing:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        rdatas = zone.records.get((qname, qtype), [])
        for rdata in rdatas:
            reply.add_answer(RR(qname + ".", getattr(QTYPE, qtype), rdata=rdata, ttl=zone.ttl))
        if not rdatas and qname not in zone.names:
            reply.header.rcode = RCODE.NXDOMAIN
        # dnslib's reply() copies the query's flags: AD only where the test says validated.
        reply.header.ad = 1 if qname in zone.validated else 0
        return reply


def _free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port for the test DNS server")


class DnsServer:
    """The Zone served on 127.0.0.1:<port> over UDP and TCP, in daemon threads."""

    def __init__(self, zone: Zone | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        """Port 0 picks a free port; a fixed one (53, for tools that only speak to port 53
        through /etc/resolv.conf) needs root and a loopback address of its own."""
        self.zone = zone or Zone()
        self.host = host
        self.fixed_port = port
        self.port = 0
        self._stop = threading.Event()
        self._servers: list[DNSServer] = []

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> DnsServer:
        resolver = _Resolver(self.zone, self._stop)
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        for attempt in range(5):
            self.port = self.fixed_port or _free_udp_tcp_port()
            try:
                udp = DNSServer(resolver, port=self.port, address=self.host, logger=quiet)
                tcp = DNSServer(resolver, port=self.port, address=self.host, tcp=True, logger=quiet)
            except OSError:
                if attempt == 4:
                    raise
                time.sleep(0.05)
                continue
            self._servers = [udp, tcp]
            break
        for server in self._servers:
            # A short poll interval: stop() waits for one poll per server.
            thread = threading.Thread(
                target=server.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
        self._servers = []

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
