#!/bin/sh
# Installs the real clients the integration tests drive: swaks, fetchmail,
# opendkim-tools (verifies our DKIM signatures), Postfix (for smtp-source and as a remote peer) and Dovecot (the bench's POP3 peer). Idempotent and quick when
# they are present; uses apt-get (tests run as root on Debian machines).
set -e
need=""
command -v swaks >/dev/null 2>&1 || need="$need swaks"
command -v fetchmail >/dev/null 2>&1 || need="$need fetchmail"
[ -x /usr/sbin/smtp-source ] || need="$need postfix"
command -v strace >/dev/null 2>&1 || need="$need strace"
# Dovecot is the POP3 peer of the benchmark harness test (never started as a service).
[ -x /usr/lib/dovecot/pop3 ] || need="$need dovecot-core dovecot-pop3d"
# opendkim-testmsg: a second DKIM implementation that verifies our signatures.
command -v opendkim-testmsg >/dev/null 2>&1 || [ -x /usr/sbin/opendkim-testmsg ] || need="$need opendkim-tools"
# swaks needs these for --tls and AUTH; Debian only recommends them.
perl -MNet::SSLeay -MIO::Socket::SSL -e1 >/dev/null 2>&1 || need="$need libnet-ssleay-perl libio-socket-ssl-perl"
perl -MAuthen::SASL -e1 >/dev/null 2>&1 || need="$need libauthen-sasl-perl"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "setup-tools: need$need but not root; install them with your package manager" >&2
  exit 1
fi
echo "setup-tools: installing$need"
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends $need >/dev/null
