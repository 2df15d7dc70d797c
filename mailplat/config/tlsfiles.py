"""Warnings for TLS certificate and key files a site names that are not on this host.

Input: a SiteConfig. Output: one warning Diagnostic (file:line:col at the
listener's `tls.cert` / `tls.key`) per enabled listener whose file is
missing. A warning, not an error: a site checked away from the mail host
(CI, a laptop) has no certificates, and `serve` and a reload refuse a
certificate that cannot be loaded anyway. Only existence is checked here;
loading is the runtime's job (it knows which user it runs as).
"""

from __future__ import annotations

from mailplat.config.diagnostics import Diagnostic, warning
from mailplat.config.load import SiteConfig, locate
from mailplat.config.models.site import Listener


def check_tls_files(config: SiteConfig) -> list[Diagnostic]:
    """A warning per enabled listener whose certificate or key file does not exist."""
    out: list[Diagnostic] = []
    listeners = config.site.listeners
    for kind in type(listeners).model_fields:
        listener = getattr(listeners, kind)
        if not isinstance(listener, Listener) or not listener.enabled or listener.tls is None:
            continue
        for part in ("cert", "key"):
            path = config.root / getattr(listener.tls, part)
            if not path.is_file():
                out.append(
                    warning(
                        config.site_file,
                        ("listeners", kind, "tls", part),
                        f"TLS {part} file {path} not found on this host",
                        "`mailplat serve` will refuse to start without it: make one with "
                        f"`mailplat tls self-signed {path.parent}` or point this at your "
                        "certificate",
                        code="tls-file-missing",
                    )
                )
    return locate(out, {config.site_file: config.root / "site.yaml"})
