#!/bin/sh
# Start the local PostgreSQL and Redis the tests talk to when they are installed but
# not running; say plainly what is missing otherwise. Never stops anything.
missing=""

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }

if ! pg_up; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        echo "services: starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do pg_up && break; sleep 1; done
    fi
    pg_up || missing="$missing PostgreSQL(127.0.0.1:5432)"
fi

if ! redis_up; then
    if command -v redis-server >/dev/null 2>&1; then
        echo "services: starting Redis"
        mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
        for _ in 1 2 3 4 5; do redis_up && break; sleep 1; done
    fi
    redis_up || missing="$missing Redis(127.0.0.1:6379)"
fi

# the brokers and databases the probe tests check against
port_up() { python3 -c "import socket,sys; socket.create_connection((\"127.0.0.1\", int(sys.argv[1])), 2)" "$1" 2>/dev/null; }
start() {  # start NAME PORT COMMAND...: run COMMAND when nothing answers on PORT
    name=$1 port=$2
    shift 2
    port_up "$port" && return 0
    if command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; then
        echo "services: starting $name"
        "$@" >/dev/null 2>&1 || true
        for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do port_up "$port" && return 0; sleep 1; done
    fi
    missing="$missing $name(127.0.0.1:$port)"
}
start MariaDB 3306 start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
start RabbitMQ 5672 rabbitmq-server -detached
start Mosquitto 1883 mosquitto -d -c /etc/mosquitto/mosquitto.conf
start NATS 4222 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server \
    -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log

if [ -n "$missing" ]; then
    echo "services: not available:$missing - tests that need them will be skipped with this reason." >&2
    echo "services: install with: apt-get install -y postgresql redis-server mariadb-server rabbitmq-server mosquitto nats-server" >&2
fi
exit 0
