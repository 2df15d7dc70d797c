"""Which DKIM keys sign an outbound message, loaded once per config.

Input: the current Directory, the envelope sender and the message. Output:
the Signer of the domain that speaks for the message, or None:
- the From header's domain when it is ours and declares `dkim:` (the
  signature DMARC aligns with: mail from our users, DSNs, autoreplies);
- else the envelope sender's domain when that is ours with `dkim:` (a list
  distributing a remote author's post under its own VERP sender);
- else nothing: mail we only forward keeps the signatures it came with.
Keys are read from their files when a config is first used (a reload that
adds a key loads it); a key that cannot be read raises KeyProblem, and the
caller defers the message rather than send it unsigned.
"""

from __future__ import annotations

from mailplat.config.directory import Directory
from mailplat.config.dkimkeys import KeyProblem, KeyRing, declared_keys
from mailplat.trust.dkim import Signer, SigningKey
from mailplat.trust.fields import from_domains, split

__all__ = ["KeyProblem", "Signers"]


class Signers:
    """Signers per domain for the config in use (rebuilt when its digest changes)."""

    def __init__(self, ring: KeyRing | None = None) -> None:
        self.ring = ring or KeyRing()
        self._digest = ""
        self._by_domain: dict[str, Signer | KeyProblem] = {}
        self._dkim_domains: frozenset[str] = frozenset()

    def _refresh(self, directory: Directory) -> None:
        if directory.digest == self._digest:
            return
        self._digest = directory.digest
        self._by_domain = {}
        domains: set[str] = set()
        for po in directory.config.postoffices.values():
            domains.update(d for d, dom in po.domains.items() if dom.dkim is not None)
        self._dkim_domains = frozenset(domains)

    def _signer(self, directory: Directory, domain: str) -> Signer:
        found = self._by_domain.get(domain)
        if found is None:
            try:
                keys = [
                    SigningKey(domain, k.selector, self.ring.get(k.path, k.algorithm))
                    for k in declared_keys(directory.config, domain)
                    if k.sign
                ]
                found = Signer(keys)
            except KeyProblem as exc:
                found = exc
            self._by_domain[domain] = found
        if isinstance(found, KeyProblem):
            raise found
        return found

    def for_message(self, directory: Directory, mail_from: str, data: bytes) -> Signer | None:
        """The Signer for this message, None when no domain of ours signs it."""
        self._refresh(directory)
        if not self._dkim_domains:
            return None
        authors = from_domains(split(data))
        candidates = [*authors[:1], mail_from.rsplit("@", 1)[-1].lower() if mail_from else ""]
        for domain in candidates:
            if domain in self._dkim_domains:
                signer = self._signer(directory, domain)
                return signer if signer.keys else None
        return None
