#!/bin/sh
# Runs a throwaway local ClickHouse for manual testing, the way mcptrail's
# tests do (recorder/chlocal): private config and data in DIR, 127.0.0.1 only.
#
#   scripts/clickhouse-server.sh [DIR] [NATIVE_PORT] [HTTP_PORT]
#
# Defaults: DIR=./.clickhouse, ports 19000 and 18123. Runs in the foreground;
# stop it with Ctrl-C. Then: clickhouse-client --port 19000
set -eu

DIR=${1:-./.clickhouse}
TCP=${2:-19000}
HTTP=${3:-18123}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
mkdir -p "$DIR/data" "$DIR/tmp" "$DIR/user_files" "$DIR/format_schemas" "$DIR/log"

if command -v clickhouse >/dev/null 2>&1; then
	set -- clickhouse server
elif command -v clickhouse-server >/dev/null 2>&1; then
	set -- clickhouse-server
elif [ -x /usr/sbin/clickhouse-server ]; then
	set -- /usr/sbin/clickhouse-server
else
	echo "no ClickHouse server binary; run scripts/install-clickhouse.sh" >&2
	exit 1
fi

cat >"$DIR/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$DIR/log/server.log</log><errorlog>$DIR/server.err.log</errorlog><size>10M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$TCP</tcp_port>
  <http_port>$HTTP</http_port>
  <path>$DIR/data/</path>
  <tmp_path>$DIR/tmp/</tmp_path>
  <user_files_path>$DIR/user_files/</user_files_path>
  <format_schema_path>$DIR/format_schemas/</format_schema_path>
  <users_config>$DIR/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
</yandex>
XML
cat >"$DIR/users.xml" <<'XML'
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML

echo "ClickHouse on 127.0.0.1:$TCP (native), 127.0.0.1:$HTTP (http), data in $DIR" >&2
exec "$@" --config-file="$DIR/config.xml"
