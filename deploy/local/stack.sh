#!/usr/bin/env bash
# Local stack without Docker: a single-node Apache Kafka 4 broker (KRaft) from the official jars
# on Maven Central, and Redis 7 from Debian's redis-server package, both on 127.0.0.1.
#   deploy/local/stack.sh up | down | status | install | kafka-libs
# `kafka-libs` fetches the jars if need be and prints their folder: the tests start brokers of
# their own (a TLS and SASL listener) from the same jars.
# `up` is idempotent: a running stack is reused. `down` stops only the processes whose PID files
# this script wrote. Data, logs and jars live under ENFORCER_STACK_DIR (git-ignored).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
STACK_DIR=${ENFORCER_STACK_DIR:-$root/.stack}
KAFKA_PORT=${ENFORCER_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${ENFORCER_KAFKA_CONTROLLER_PORT:-19093}
REDIS_PORT=${ENFORCER_REDIS_PORT:-16379}
KAFKA_HEAP=${ENFORCER_KAFKA_HEAP:-512m}

kafka_dir=$STACK_DIR/kafka
redis_dir=$STACK_DIR/redis
libs=$STACK_DIR/kafka-libs

log() { echo "[stack] $*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing redis-server from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  local major
  major=$(redis-server --version | sed -E 's/.*v=([0-9]+).*/\1/')
  if [ "$major" -lt 7 ]; then
    echo "redis-server $major found; enforcer needs Redis 7 or newer" >&2
    exit 1
  fi
}

install_kafka() {
  if [ -f "$libs/.complete" ]; then return; fi
  command -v java >/dev/null || { echo "java not found: Kafka 4 needs Java 17" >&2; exit 1; }
  command -v mvn >/dev/null || {
    log "installing maven from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null
  }
  log "fetching Kafka jars from Maven Central (first start only)"
  mkdir -p "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -Dkafka.libs.dir="$libs"
  touch "$libs/.complete"
}

kafka_up() {
  if pid_alive "$kafka_dir/kafka.pid"; then log "kafka already running on $KAFKA_PORT"; return; fi
  if port_open "$KAFKA_PORT"; then
    echo "port $KAFKA_PORT is taken by another process; set ENFORCER_KAFKA_PORT" >&2; exit 1
  fi
  install_kafka
  mkdir -p "$kafka_dir/data"
  local overrides=(
    --override "listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
    --override "advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT"
    --override "controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT"
    --override "log.dirs=$kafka_dir/data"
  )
  if [ ! -f "$kafka_dir/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    # StorageTool takes no --override, so it formats with a rendered copy of the properties.
    sed -e "s#^log.dirs=.*#log.dirs=$kafka_dir/data#" \
        -e "s#^controller.quorum.voters=.*#controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT#" \
        "$here/server.properties" > "$kafka_dir/format.properties"
    java -Dlog4j.configuration="file:$here/log4j.properties" -cp "$libs/*" kafka.tools.StorageTool \
      format -t "$cluster_id" -c "$kafka_dir/format.properties" >"$kafka_dir/format.log" 2>&1
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  # The JVM's full JIT (C1 then C2), as a production broker runs. C1 alone starts on half the
  # CPU (3.5 s against 7) and both idle at about 3% of a core once C2's first minute of
  # compiling is over; but under the live bench's 5,000 events/s a C1-only broker spent 49-59 us
  # of CPU per event against 32-41 us, CPU taken from the worker and Redis on two cores.
  nohup java -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC \
    -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$here/log4j.properties" -cp "$libs/*" \
    kafka.Kafka "$here/server.properties" "${overrides[@]}" >"$kafka_dir/kafka.log" 2>&1 &
  echo $! >"$kafka_dir/kafka.pid"
  for _ in $(seq 1 120); do
    if grep -q "Kafka Server started" "$kafka_dir/kafka.log" 2>/dev/null && port_open "$KAFKA_PORT"; then
      log "kafka ready"; return
    fi
    pid_alive "$kafka_dir/kafka.pid" || { tail -n 30 "$kafka_dir/kafka.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "kafka did not start within 60 s; see $kafka_dir/kafka.log" >&2; exit 1
}

redis_up() {
  if pid_alive "$redis_dir/redis.pid"; then log "redis already running on $REDIS_PORT"; return; fi
  if port_open "$REDIS_PORT"; then
    echo "port $REDIS_PORT is taken by another process; set ENFORCER_REDIS_PORT" >&2; exit 1
  fi
  install_redis
  mkdir -p "$redis_dir"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  # Persistence and eviction come from deploy/redis/redis.conf, shared with the compose file.
  redis-server "$here/../redis/redis.conf" --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$redis_dir" --daemonize yes --pidfile "$redis_dir/redis.pid" \
    --logfile "$redis_dir/redis.log"
  for _ in $(seq 1 50); do
    port_open "$REDIS_PORT" && { log "redis ready"; return; }
    sleep 0.1
  done
  echo "redis did not start; see $redis_dir/redis.log" >&2; exit 1
}

stop_pid() {
  local name=$1 pidfile=$2
  if pid_alive "$pidfile"; then
    local pid; pid=$(cat "$pidfile")
    log "stopping $name ($pid)"
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$pidfile"
}

status() {
  local rc=0
  if pid_alive "$kafka_dir/kafka.pid"; then log "kafka: running (pid $(cat "$kafka_dir/kafka.pid"), 127.0.0.1:$KAFKA_PORT)"
  else log "kafka: stopped"; rc=1; fi
  if pid_alive "$redis_dir/redis.pid"; then log "redis: running (pid $(cat "$redis_dir/redis.pid"), 127.0.0.1:$REDIS_PORT)"
  else log "redis: stopped"; rc=1; fi
  return $rc
}

case "${1:-}" in
  up) redis_up; kafka_up ;;
  down) stop_pid kafka "$kafka_dir/kafka.pid"; stop_pid redis "$redis_dir/redis.pid" ;;
  status) status ;;
  install) install_redis; install_kafka ;;
  kafka-libs) install_kafka >&2; echo "$libs" ;;
  *) echo "usage: $0 up|down|status|install|kafka-libs" >&2; exit 2 ;;
esac
