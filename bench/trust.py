"""What sender authentication costs: SMTP accept with verification on vs off, and DKIM signing.

    python -m bench.trust [--rounds 5] [--messages 40] [--sessions 10]

Accept: two `mailplat serve` processes on one site each, the same in all
but `authentication.verify`, take 1 KiB messages from 10 concurrent SMTP
sessions. The messages come from sender.test, DKIM-signed (dkimpy,
rsa-sha256 2048) with SPF and DMARC p=reject published on a real DNS server
on loopback, so "on" does the whole work: SPF of MAIL FROM and HELO, one
RSA verification, DMARC, ARC, the Authentication-Results header; DNS
answers are cached per TTL as in production. Rounds alternate on/off so
drift on a shared machine hits both alike. The report is the median and
range of messages per second, and on/off as a ratio (the issue's bound:
verification must not cut throughput by more than 20%); and, steadier on a
shared machine, the server's CPU time per message (accept and delivery,
from /proc), whose off/on ratio is the throughput a CPU-bound server keeps.

Signing: microseconds per 1 KiB message for our signer (rsa-sha256,
ed25519-sha256, both), and dkimpy's pure-Python RSA signing for comparison.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailplat.trust.dkim import Signer, SigningKey, public_record
from tests.support import write_site
from tests.support_dns import DnsServer, Zone

BODY = ("x" * 70 + "\r\n") * 12  # ~850 bytes of body: ~1 KiB with headers


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _message(i: int) -> bytes:
    return (
        f"From: Sam <sam@sender.test>\r\nTo: alice@example.test\r\nSubject: bench {i}\r\n"
        f"Date: Mon, 06 May 2024 10:00:00 +0000\r\nMessage-ID: <{i}.bench@sender.test>\r\n\r\n{BODY}"
    ).encode()


def _zone(key: rsa.RSAPrivateKey) -> Zone:
    zone = Zone()
    zone.ttl = 3600
    zone.txt("sender.test", "v=spf1 ip4:127.0.0.0/8 -all")
    zone.txt("client.sender.test", "v=spf1 a -all")
    zone.a("client.sender.test", "127.0.0.1")
    zone.txt("s1._domainkey.sender.test", public_record(key))
    zone.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    return zone


def _site(root: Path, dns: DnsServer, port: int, verify: bool) -> Path:
    site = {
        "server": {"dns_servers": [dns.address]},
        "listeners": {
            "smtp": {"bind": [f"127.0.0.1:{port}"]},
            "pop3": {"enabled": False},
        },
        "logging": {"w3c": False, "activity": False, "json": False},
        "authentication": {"verify": verify},
    }
    return write_site(root, site=site, tls=False)


def _serve(site: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailplat", "serve", str(site), "--data", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"mailplat serve exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mailplat serve did not start")


async def _session(port: int, messages: list[bytes]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"EHLO client.sender.test\r\n")
    await reply()
    ok = 0
    for data in messages:
        # PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write.
        writer.write(b"MAIL FROM:<sam@sender.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        await writer.drain()
        codes = [await reply() for _ in range(3)]
        if not codes[2].startswith(b"354"):
            raise RuntimeError(f"refused: {codes}")
        writer.write(data + b".\r\n")
        await writer.drain()
        final = await reply()
        if not final.startswith(b"250"):
            raise RuntimeError(f"refused: {final!r}")
        ok += 1
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return ok


async def _load(port: int, sessions: int, signed: list[bytes]) -> float:
    """Messages per second over `sessions` concurrent sessions."""
    per = len(signed) // sessions
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(_session(port, signed[i * per : (i + 1) * per]) for i in range(sessions))
    )
    return sum(counts) / (time.perf_counter() - started)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _stats(values: list[float], digits: int = 1) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def accept_bench(rounds: int, messages: int, sessions: int) -> dict[str, Any]:
    key = rsa.generate_private_key(65537, 2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    signed = [
        dkim.sign(_message(i), b"s1", b"sender.test", pem, canonicalize=(b"relaxed", b"relaxed"))
        + _message(i)
        for i in range(messages * sessions)
    ]
    results: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}  # server CPU ms per message
    with (
        tempfile.TemporaryDirectory(prefix="mailplat-bench-trust-") as tmp,
        DnsServer(_zone(key)) as dns,
    ):
        procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            for mode in ("on", "off"):
                port = _port()
                site = _site(Path(tmp) / mode, dns, port, mode == "on")
                procs[mode] = (_serve(site, Path(tmp) / mode / "data", port), port)
            sent = {"on": 0, "off": 0}

            def settle(mode: str) -> None:
                # Local delivery runs after the 250: let it finish before the next
                # round, or one server's Maildir writes land in the other's timing.
                inbox = Path(tmp) / mode / "data" / "postoffices" / "example" / "alice" / "new"
                end = time.monotonic() + 60
                while time.monotonic() < end:
                    if inbox.is_dir() and sum(1 for _ in inbox.iterdir()) >= sent[mode]:
                        return
                    time.sleep(0.05)
                raise RuntimeError(f"{mode}: {sent[mode]} messages not delivered in time")

            # One warm-up round each: caches, first-use costs, page cache.
            for mode in ("on", "off"):
                asyncio.run(_load(procs[mode][1], sessions, signed[: sessions * 5]))
                sent[mode] += sessions * 5
                settle(mode)
            for _ in range(rounds):
                for mode in ("on", "off"):
                    proc, port = procs[mode]
                    before = _cpu_seconds(proc.pid)
                    results[mode].append(asyncio.run(_load(port, sessions, signed)))
                    count = len(signed) // sessions * sessions
                    sent[mode] += count
                    settle(mode)  # the CPU of delivering them counts too
                    cpu[mode].append((_cpu_seconds(proc.pid) - before) * 1000 / count)
        finally:
            for proc, _ in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc, _ in procs.values():
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        queries = len(dns.zone.queries)
    on, off = _stats(results["on"]), _stats(results["off"])
    return {
        "what": f"SMTP accept, 1 KiB, {sessions} sessions x {messages} messages, per round",
        "unit": "messages/s",
        "rounds": rounds,
        "verification_on": {**on, "runs": [round(v, 1) for v in results["on"]]},
        "verification_off": {**off, "runs": [round(v, 1) for v in results["off"]]},
        "on_over_off": round(on["median"] / off["median"], 3),
        "bound": "on_over_off >= 0.80",
        # Less sensitive than wall-clock rates to other load on a shared machine.
        "server_cpu_ms_per_message": {
            "verification_on": _stats(cpu["on"], 3),
            "verification_off": _stats(cpu["off"], 3),
            "off_over_on": round(statistics.median(cpu["off"]) / statistics.median(cpu["on"]), 3),
        },
        "dns_queries_total": queries,
    }


def _time_per_call(fn: Any, n: int) -> float:
    fn()
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - started) / n * 1e6)
    return round(statistics.median(samples), 1)


def signing_bench() -> dict[str, Any]:
    rsa_key = rsa.generate_private_key(65537, 2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    message = _message(1).replace(b"sam@sender.test", b"alice@example.test")
    signers = {
        "rsa-sha256": Signer([SigningKey("example.test", "rsa1", rsa_key)]),
        "ed25519-sha256": Signer([SigningKey("example.test", "ed1", ed_key)]),
        "both (default)": Signer(
            [SigningKey("example.test", "rsa1", rsa_key), SigningKey("example.test", "ed1", ed_key)]
        ),
    }
    out: dict[str, Any] = {"what": "DKIM signing of one 1 KiB message", "unit": "microseconds"}
    for name, signer in signers.items():
        out[name] = _time_per_call(lambda s=signer: s.sign(message), 200)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    out["dkimpy rsa-sha256 (for comparison)"] = _time_per_call(
        lambda: dkim.sign(message, b"rsa1", b"example.test", pem), 30
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.trust", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=40, help="messages per session per round")
    parser.add_argument("--sessions", type=int, default=10)
    args = parser.parse_args()
    report = {
        "accept": accept_bench(args.rounds, args.messages, args.sessions),
        "signing": signing_bench(),
        "cpus": os.cpu_count(),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
