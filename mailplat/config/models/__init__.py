"""The site's configuration models (pydantic v2), one file per object kind."""

from mailplat.config.models.postoffice import (
    Domain,
    Group,
    Mailbox,
    MailingList,
    Postoffice,
)
from mailplat.config.models.site import Site

__all__ = ["Domain", "Group", "Mailbox", "MailingList", "Postoffice", "Site"]
