#!/usr/bin/env bash
# Runs Neo4j Community on 127.0.0.1 for tests and development, building the launcher first if needed.
#
#   tools/neo4j-local/run.sh [--dir DIR] [--port PORT] [--watch-stdin]
#
# Prints "NEO4J_LOCAL_READY bolt://127.0.0.1:PORT" on stdout once Bolt accepts connections.
# NEO4J_LOCAL_PASSWORD=... turns authentication on (user neo4j); NEO4J_LOCAL_JAVA_OPTS adds JVM
# options. SIGTERM stops the server cleanly.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jar="$here/target/neo4j-local.jar"

needs_build() {
  [[ ! -f "$jar" || ! -d "$here/target/lib" ]] && return 0
  [[ -n "$(find "$here/pom.xml" "$here/src" -newer "$jar" -type f -print -quit)" ]]
}

if needs_build; then
  echo "neo4j-local: building the launcher (mvn package)" >&2
  # Offline first (everything is in ~/.m2 after the first build), then online.
  if ! (cd "$here" && mvn -q -B -o package >&2 2>/dev/null); then
    (cd "$here" && mvn -q -B package >&2)
  fi
fi

java_bin="java"
if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  java_bin="$JAVA_HOME/bin/java"
fi

# shellcheck disable=SC2086
exec "$java_bin" -Xms256m -Xmx1g -XX:+UseParallelGC -XX:+ExitOnOutOfMemoryError \
  -Dio.netty.tryReflectionSetAccessible=true -Djdk.nio.maxCachedBufferSize=1024 \
  ${NEO4J_LOCAL_JAVA_OPTS:-} -jar "$jar" "$@"
