"""Load a change to a running site: re-read what changed, check what it can break.

Input: the site folder, the LoadCache the running server keeps, and the
Directory it serves (valid: it was checked when it went live). Output: the
new SiteConfig and its Directory, or ConfigError with every error, as
load_site gives.

When every file parses on its own, the new Directory is derived from the
served one (only the changed postoffices' entries are replaced) and only the
rules a change can break run (validate.check_change): the changed
postoffices' own rules, ownership of the addresses and domains they claim,
the targets of every postoffice naming one of their domains, loops through
their groups and redirects, postmaster autoresponders, and site.yaml's rules
when it changed. A one-line change to a site of 10,000 postoffices is read
and checked in milliseconds. When a file has errors, or the served Directory
cannot be derived from (a key claimed twice), everything is checked as
`mailplat validate` does, so a refused change still lists every error.
"""

from __future__ import annotations

from pathlib import Path

from mailplat.config.directory import Directory
from mailplat.config.load import (
    LoadCache,
    SiteConfig,
    collection_paused,
    finish,
    read_site,
)
from mailplat.config.validate import check_change, validate_site


def load_change(
    site_dir: Path, cache: LoadCache, base: Directory | None
) -> tuple[SiteConfig, Directory]:
    """The changed site and its Directory; ConfigError (every error) when it is broken."""
    with collection_paused():
        read = read_site(site_dir, cache)
        if base is None or not read.clean:
            config = finish(read, read.diags + validate_site(read.config, read.gaps))
            return config, Directory(config, base)
        directory = Directory(read.config, base)
        if directory.derived:
            diags = check_change(base, directory)
        else:
            diags = validate_site(read.config, read.gaps)
        config = finish(read, diags)
        # The Directory was built before the warnings were known; same config otherwise.
        directory.config = config
        return config, directory
