#!/bin/sh
# Install the Debian packages the tests use when they are missing and this user can
# (root with apt-get); otherwise say which are missing: the tests that need them skip,
# each naming what it lacks. Never removes anything.
need=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have pg_ctl || have pg_ctlcluster || [ -d /usr/lib/postgresql ] || need="$need postgresql"
have pg_dump || need="$need postgresql-client"
have redis-server || need="$need redis-server"
have chromium || need="$need chromium"
have dnsmasq || need="$need dnsmasq-base"
have age || need="$need age"
have nginx || need="$need nginx-light"
have promtool || need="$need prometheus"
have sshd || need="$need openssh-server"
have dovecot || need="$need dovecot-imapd dovecot-pop3d"
have mariadbd || need="$need mariadb-server"
have rabbitmq-server || need="$need rabbitmq-server"
have mosquitto || need="$need mosquitto"
have nats-server || need="$need nats-server"
have ip || need="$need iproute2"

[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tools: installing$need"
    # a package that is not in this release's archive must not stop the others
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq $need >/dev/null 2>&1 || for package in $need; do
        apt-get install -y -qq "$package" >/dev/null 2>&1 || echo "tools: could not install $package" >&2
    done
else
    echo "tools: missing:$need - the tests that use them will be skipped, each saying why." >&2
    echo "tools: install with: sudo apt-get install -y$need" >&2
fi
exit 0
