"""Deliverability and trust: DKIM, SPF, DMARC, ARC, MTA-STS, DANE and the DNS to publish.

Mechanisms only: connectors (smtp_in checks, smtp_out signs and follows TLS
policies) and the CLI (`mailplat dkim`, `mailplat dns`) call into here. Every
DNS query goes through mailplat.dns.resolver; nothing here prints or owns a
socket except the MTA-STS policy fetch.
"""
