#!/usr/bin/env bash
# Runs Neo4j Community on 127.0.0.1 for tests and development, building the launcher first if needed.
#
#   tools/neo4j-local/run.sh [--dir DIR] [--port PORT] [--watch-stdin] [--stop-when-ready]
#
# Prints "NEO4J_LOCAL_READY bolt://127.0.0.1:PORT" on stdout once Bolt accepts connections.
# NEO4J_LOCAL_PASSWORD=... turns authentication on (user neo4j); NEO4J_LOCAL_JAVA_OPTS adds JVM
# options (e.g. -XX:TieredStopAtLevel=1 starts faster but runs queries slower). SIGTERM stops
# the server cleanly.
#
# The build (`mvn -q -B package`, offline once ~/.m2 holds everything) also records a class-data
# archive (target/neo4j-local.jsa) by starting and stopping Neo4j once; later starts map it and
# spend about a third less CPU loading classes. A missing or stale archive is only slower.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jar="$here/target/neo4j-local.jar"
archive="$here/target/neo4j-local.jsa"

java_bin="java"
if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  java_bin="$JAVA_HOME/bin/java"
fi
jvm_opts=(-Xms256m -Xmx1g -XX:+UseParallelGC -XX:+ExitOnOutOfMemoryError
  -Dio.netty.tryReflectionSetAccessible=true -Djdk.nio.maxCachedBufferSize=1024)

needs_build() {
  [[ ! -f "$jar" || ! -d "$here/target/lib" ]] && return 0
  [[ -n "$(find "$here/pom.xml" "$here/src" -newer "$jar" -type f -print -quit)" ]]
}

record_archive() {
  local scratch tmp
  scratch="$(mktemp -d)"
  tmp="$archive.$$"
  echo "neo4j-local: recording a class-data archive (one start and stop of Neo4j)" >&2
  if "$java_bin" "${jvm_opts[@]}" -XX:ArchiveClassesAtExit="$tmp" -jar "$jar" \
      --dir "$scratch/home" --stop-when-ready >/dev/null 2>"$scratch/log" && [[ -s "$tmp" ]]; then
    mv -f "$tmp" "$archive"
  else
    echo "neo4j-local: no class-data archive (starts will be slower): $(tail -3 "$scratch/log")" >&2
    rm -f "$tmp"
  fi
  rm -rf "$scratch"
}

mkdir -p "$here/target"
# One build at a time when several test sessions start Neo4j at once.
exec 9>"$here/target/.build.lock"
flock 9 2>/dev/null || true

if needs_build; then
  echo "neo4j-local: building the launcher (mvn package)" >&2
  # Offline first (everything is in ~/.m2 after the first build), then online.
  if ! (cd "$here" && mvn -q -B -o package >/dev/null 2>&1); then
    (cd "$here" && mvn -q -B package >&2)
  fi
  rm -f "$archive"
fi
if [[ ! -f "$archive" || "$jar" -nt "$archive" ]]; then
  record_archive
fi
if [[ -f "$archive" ]]; then
  jvm_opts+=(-XX:SharedArchiveFile="$archive" -Xlog:cds=off -Xlog:cds+dynamic=off)
fi

flock -u 9 2>/dev/null || true
exec 9>&-

# shellcheck disable=SC2086
exec "$java_bin" "${jvm_opts[@]}" ${NEO4J_LOCAL_JAVA_OPTS:-} -jar "$jar" "$@"
