"""Scenario 4: POP3 RETR of M mailboxes x K messages by M concurrent clients, vs Dovecot.

Both servers get the same Maildir files (written straight into new/), start
once, and get one unmeasured pass each first (Dovecot moves new/ to cur/ and
builds its index at the first login; mailplat reads its sizes): the rounds
then compare steady servers. Nothing is deleted, so every round RETRieves
everything again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from bench.harness import Context, Measure, SideRun, mailplat_failed, mailplat_server, run_rounds
from bench.mailplat_side import MailplatServer
from bench.peers import PeerUnavailable
from bench.peers.dovecot import DovecotPeer
from bench.pop3_load import fill_maildir, password_hash, retrieve_all
from bench.record import RATIO_AT_LEAST_1, Record
from bench.util import REGISTRY, free_port


@contextmanager
def dovecot_peer(ctx: Context, logins: list[str], messages: int) -> Iterator[DovecotPeer | None]:
    """A private Dovecot with every login's Maildir filled, or None (reason kept)."""
    if not ctx.peers or "dovecot" in ctx.peer_errors:
        yield None
        return
    peer = DovecotPeer(
        port=free_port(),
        users={login: password_hash() for login in logins},
        root=ctx.work / "dovecot",
    )
    try:
        peer.prepare()
        for login in logins:
            fill_maildir(peer.maildir(login), messages, 1024)
        peer.start()
    except (PeerUnavailable, RuntimeError, TimeoutError) as exc:
        ctx.peer_errors["dovecot"] = str(exc)
        ctx.log(f"[yellow]dovecot unavailable: {exc}")
        REGISTRY.run_stop("dovecot")
        yield None
        return
    pid = peer.master_pid()
    if pid is not None:
        REGISTRY.note_server("dovecot", pid)
    try:
        yield peer
    finally:
        REGISTRY.run_stop("dovecot")


def retr_run(port: int, logins: list[str], expected: int) -> SideRun:
    """Every client logs in, RETRs all, quits; the value is messages per second."""

    def run() -> Measure:
        res = retrieve_all(port, logins)
        raw = {"messages": res.messages, "octets": res.octets, "seconds": round(res.seconds, 4)}
        if res.errors or res.messages != expected:
            return Measure(None, raw, [f"{res.messages}/{expected} retrieved; {res.errors[:3]}"])
        return Measure(res.rate, raw)

    return run


def scenario_4(ctx: Context) -> list[Record]:
    """POP3: M mailboxes x K messages, everything RETRieved by M concurrent clients."""
    m, k = ctx.sizes.pop_mailboxes, ctx.sizes.pop_messages
    names = [f"p{i}" for i in range(m)]
    logins = [f"{n}@bench.test" for n in names]
    rec = Record(
        "4",
        f"POP3 RETR, {m} mbox x {k}, {m} clients",
        "msg/s",
        peer_name="dovecot",
        target=">= 1.0x Dovecot",
        goal=RATIO_AT_LEAST_1,
    )

    def fill(server: MailplatServer) -> None:
        for name in names:
            fill_maildir(server.maildir(name), k, 1024)

    with ExitStack() as stack:
        runs: dict[str, SideRun] = {}
        mp = stack.enter_context(mailplat_server(ctx, "s4", names, fill=fill))
        if mp is None or mp.pop3_port is None:
            mailplat_failed(ctx, rec)
        else:
            runs["mailplat"] = retr_run(mp.pop3_port, logins, m * k)
        dv = stack.enter_context(dovecot_peer(ctx, logins, k))
        if dv is not None:
            runs["peer"] = retr_run(dv.port, logins, m * k)
        warm = {side: run() for side, run in runs.items()}
        rec.extra["warm_up"] = {side: w.raw for side, w in warm.items()}
        for side, w in warm.items():
            rec.notes += [f"warm-up, {side}: {n}" for n in w.notes]
        if runs:
            run_rounds(ctx, rec, runs)
    return [rec]
