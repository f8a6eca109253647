#!/usr/bin/env bash
# What `make test` needs besides Python packages: the local PostgreSQL and Redis the integration tests
# use, Debian's Chromium for the browser tests, and Debian's Dovecot and Postfix binaries for the mail
# tests' private instances. Starts or installs each one that is missing, and says what to do by hand
# where it cannot (not root, no apt-get, another OS).
set -euo pipefail

missing=()

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

postgres_up() { command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q; }
redis_up() { command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
wait_for() { for _ in $(seq 30); do "$1" && return 0; sleep 1; done; return 1; }

if ! postgres_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ "$(id -u)" = 0 ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    wait_for postgres_up || missing+=("PostgreSQL did not come up on 127.0.0.1:5432")
  else
    missing+=("PostgreSQL on 127.0.0.1:5432 with trust auth and a database 'test' (Debian: apt-get install postgresql)")
  fi
fi

if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis"
    mkdir -p /tmp/digest-redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /tmp/digest-redis --logfile /tmp/digest-redis/redis.log
    wait_for redis_up || missing+=("Redis did not come up on 127.0.0.1:6379")
  else
    missing+=("Redis on 127.0.0.1:6379 (Debian: apt-get install redis-server)")
  fi
fi

# The browser tests drive Debian's Chromium through Playwright; Playwright's own browser download is not
# possible on these machines.
if [ ! -x /usr/bin/chromium ]; then
  if can_install; then
    echo "installing Chromium from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    missing+=("Chromium at /usr/bin/chromium (Debian: sudo apt-get install chromium)")
  fi
fi

# The bounce mailbox's IMAP test runs a private Dovecot on a loopback port with a configuration of its own
# (tests/unit/bounces/test_imap.py); it needs only the binary. A policy-rc.d that says no (when the machine
# has none) keeps the package from starting the system-wide instance.
install_dovecot() {
  local added_policy="" status=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && added_policy=1
  fi
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null; } \
    || status=$?
  if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  return "$status"
}
if [ ! -x /usr/sbin/dovecot ]; then
  if can_install; then
    echo "installing Dovecot's IMAP server from Debian's packages (not started; the test runs its own)"
    install_dovecot || missing+=("Dovecot did not install (Debian: apt-get install dovecot-imapd)")
  else
    missing+=("Dovecot at /usr/sbin/dovecot (Debian: sudo apt-get install dovecot-imapd)")
  fi
fi

# The mail tests run private Postfix instances of their own (tools/postfix.py), for a real MTA's replies
# and DSNs; they need only the binaries. "No configuration" leaves /etc/postfix without a main.cf, and a
# policy-rc.d (if the machine has none) keeps the package from starting the system-wide instance.
install_postfix() {
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  local added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && added_policy=1
  fi
  local status=0
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null || status=$?
  if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  return "$status"
}
if [ ! -x /usr/sbin/postfix ]; then
  if can_install; then
    echo "installing Postfix from Debian's packages (not configured or started; the tests run their own)"
    install_postfix || missing+=("Postfix did not install (Debian: apt-get install postfix, 'No configuration')")
  else
    missing+=("Postfix at /usr/sbin/postfix (Debian: sudo apt-get install postfix, choosing 'No configuration')")
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "make test needs these and could not set them up here:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
echo "services: PostgreSQL, Redis, Chromium, Dovecot and Postfix are ready ($(/usr/bin/chromium --version 2>/dev/null || echo chromium))"
