# Sourced by bin/demo and bin/bench: a private mosquitto on a free port of 127.0.0.1.
# start_private_broker sets $port and $broker (its pid); stop_private_broker ends it.

free_port() {
  local p
  for _ in $(seq 1 50); do
    # Below the kernel's ephemeral range (32768 and up by default): a port an outgoing
    # connection holds passes the probe below, and mosquitto could not bind it.
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

start_private_broker() {
  port=$(free_port)
  broker_conf=$(mktemp)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n# Small messages go out at once (Nagle plus delayed ACKs adds ~40 ms per hop otherwise).\nset_tcp_nodelay true\n# A burst of QoS 1 messages to one slow subscriber must queue, not be dropped (default 1000).\nmax_queued_messages 100000\n' "$port" >"$broker_conf"
  # mosquitto drops root privileges before reading its configuration.
  chmod 644 "$broker_conf"
  "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$broker_conf" >/dev/null 2>&1 &
  broker=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "mosquitto did not start on port $port" >&2
  return 1
}

stop_private_broker() {
  kill "$broker" 2>/dev/null || true
  rm -f "$broker_conf"
}
