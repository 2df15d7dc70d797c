"""`mailplat dkim keygen SITE [--domain D]`: make the DKIM keys a site declares, print their TXT.

Each key named under a domain's `dkim:` (default selectors rsa1 and ed1) is
written where key_file says (default dkim/<domain>.<selector>.pem in the
site folder, with a .gitignore so it never reaches git), owner-only (0600).
A key file that exists is kept: rotation means declaring a new selector.
Then the TXT record of every key is printed, ready for the zone file; with
--json, as one document. Exit 1 when no domain declares dkim.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mailplat.cli.console import (
    JsonOpt,
    SiteArg,
    SiteOpt,
    emit_json,
    fail,
    handle,
    out,
    site_of,
)
from mailplat.config.dkimkeys import KeyProblem, declared_keys
from mailplat.config.load import load_site
from mailplat.core.errors import MailplatError
from mailplat.trust.keys import RSA_BITS, ensure, zone_line

dkim_app = typer.Typer(help="DKIM signing keys.", no_args_is_help=True)


@dkim_app.command("keygen")
def keygen(
    site: SiteArg = None,
    site_opt: SiteOpt = None,
    domain: Annotated[
        str | None,
        typer.Option("--domain", "-d", metavar="DOMAIN", help="Only this domain's keys."),
    ] = None,
    bits: Annotated[int, typer.Option(min=1024, max=4096, help="Size of new RSA keys.")] = RSA_BITS,
    as_json: JsonOpt = False,
) -> None:
    """Create the DKIM keys SITE declares that do not exist yet (0600); print the TXT records.

    Declare keys first, per domain in its postoffice file: `dkim: {}` for the
    default pair (rsa1 rsa-sha256 and ed1 ed25519). Publish the printed
    records before the keys sign; `mailplat dns SITE` checks they are there.
    """
    path = site_of(site, site_opt)
    try:
        config = load_site(path)
    except MailplatError as exc:
        handle(exc, to_json=as_json)
    if domain is not None:
        domain = domain.strip().lower().rstrip(".")
        hosted = {d for po in config.postoffices.values() for d in po.domains}
        if domain not in hosted:
            fail(f"{domain} is not a domain of site {config.name}")
    keys = declared_keys(config, domain)
    if not keys:
        where = f"domain {domain}" if domain else "no domain of the site"
        fail(
            f"{where} declares DKIM keys; add `dkim: {{}}` under the domain in its "
            "postoffice file (selectors rsa1 and ed1), then run this again"
        )
    made = []
    for key in keys:
        try:
            made.append(ensure(key, config.root, bits))
        except (KeyProblem, OSError) as exc:
            fail(f"{key.dns_name}: {exc}")
    if as_json:
        emit_json(
            {
                "ok": True,
                "keys": [
                    {
                        "domain": m.key.domain,
                        "selector": m.key.selector,
                        "algorithm": m.key.algorithm,
                        "key_file": str(m.key.path),
                        "created": m.created,
                        "signs": m.key.sign,
                        "name": m.key.dns_name,
                        "txt": m.record,
                    }
                    for m in made
                ],
            }
        )
        return
    for m in made:
        verb = "created" if m.created else "kept existing"
        out.print(f"{verb} {m.key.path} ({m.key.algorithm}, 0600)", markup=False)
    out.print("\nPublish these TXT records (then check with `mailplat dns`):", markup=False)
    for m in made:
        out.print(zone_line(m.key.dns_name, m.record), markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(dkim_app, name="dkim")
