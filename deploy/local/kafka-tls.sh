# The secured listeners of the local broker (sourced by kafka.sh): a CA of its own, a broker
# certificate for 127.0.0.1 and localhost, a client certificate, and one SASL user "fleet"
# with a random password, made once under $FLEET_HOME/kafka/tls with openssl.

TLS="$KAFKA_HOME/tls"
SASL_USER=fleet

make_tls() {
  [[ -f "$TLS/.complete" ]] && return 0
  command -v openssl >/dev/null || die "openssl is missing (Debian: apt-get install openssl)"
  say "making a local CA, broker and client certificates in $TLS (once)"
  rm -rf "$TLS"; mkdir -p "$TLS"; chmod 700 "$TLS"
  (
    cd "$TLS"
    openssl rand -hex 16 >store-password
    openssl rand -hex 16 >sasl-password
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=fleet local CA" \
      -keyout ca.key -out ca.crt
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker.key -out broker.csr
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile broker.ext -out broker.crt
    openssl pkcs12 -export -in broker.crt -inkey broker.key -certfile ca.crt \
      -passout "file:store-password" -out broker.p12
    openssl req -newkey rsa:2048 -nodes -subj "/CN=fleet-client" -keyout client.key -out client.csr
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out client.crt
  ) >"$FLEET_LOG_DIR/kafka-tls.log" 2>&1 || { tail -n 20 "$FLEET_LOG_DIR/kafka-tls.log" >&2; die "openssl failed (log: $FLEET_LOG_DIR/kafka-tls.log)"; }
  touch "$TLS/.complete"
}

tls_broker_config() { # the broker settings of the SASL_SSL and SSL listeners
  local store; store="$(cat "$TLS/store-password")"
  cat <<CONF
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$(cat "$TLS/sasl-password")";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$store
ssl.key.password=$store
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.crt
listener.name.ssl.ssl.client.auth=required
CONF
}

add_scram_user() { # add_scram_user SERVERS DATA LOG: once per data directory
  local servers=$1 data=$2 log=$3 password
  [[ -f "$data/.scram-$SASL_USER" ]] && return 0
  password="$(cat "$TLS/sasl-password")"
  # One mechanism per call: the broker refuses two credentials of one user in one request.
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
    kafka_java kafka.admin.ConfigCommand --bootstrap-server "$servers" --alter \
      --add-config "$mechanism=[password=$password]" \
      --entity-type users --entity-name "$SASL_USER" >>"$log" 2>&1 \
      || { tail -n 20 "$log" >&2; die "adding the $mechanism user failed (log: $log)"; }
  done
  touch "$data/.scram-$SASL_USER"
}

write_listeners_json() { # write_listeners_json FILE SASL_SSL_SERVERS SSL_SERVERS
  cat >"$1" <<JSON
{
  "sasl_ssl": "$2",
  "ssl": "$3",
  "username": "$SASL_USER",
  "password_file": "$TLS/sasl-password",
  "ca_file": "$TLS/ca.crt",
  "client_cert": "$TLS/client.crt",
  "client_key": "$TLS/client.key"
}
JSON
}
