package dev.aesoperator.neo4jlocal;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.BoltConnectorInternalSettings;
import org.neo4j.configuration.connectors.ConnectorPortRegister;
import org.neo4j.configuration.connectors.ConnectorType;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.internal.helpers.HostnamePort;
import org.neo4j.io.ByteUnit;
import org.neo4j.kernel.internal.GraphDatabaseAPI;

/**
 * Runs Neo4j Community on loopback for tests and development.
 *
 * <pre>
 * java -jar neo4j-local.jar [--dir DIR] [--port PORT] [--watch-stdin] [--stop-when-ready]
 * </pre>
 *
 * <ul>
 *   <li>{@code --dir}: the server's home (data, logs); kept across runs. Absent: a temporary
 *       directory that is deleted at exit.</li>
 *   <li>{@code --port}: the Bolt port on 127.0.0.1; absent or 0 picks a free one.</li>
 *   <li>{@code --watch-stdin}: stop when standard input closes, so the server never outlives the
 *       process that started it.</li>
 *   <li>{@code --stop-when-ready}: shut down right after the ready line (a start-up check, and
 *       how the build records a class-data archive that makes later starts faster).</li>
 *   <li>{@code NEO4J_LOCAL_PASSWORD} (environment): when set, authentication is on and the user
 *       {@code neo4j} has this password (at least 8 characters); when unset, authentication is
 *       off.</li>
 * </ul>
 *
 * Once Bolt accepts connections, exactly one line {@code NEO4J_LOCAL_READY bolt://127.0.0.1:PORT}
 * is printed on standard output; everything else goes to standard error or the logs under the
 * home directory. SIGTERM (or SIGINT) shuts the database down cleanly.
 */
public final class Neo4jLocal {

    static final String READY = "NEO4J_LOCAL_READY";
    static final String PASSWORD_ENV = "NEO4J_LOCAL_PASSWORD";
    static final String USER = "neo4j";

    private Neo4jLocal() {}

    public static void main(String[] args) throws Exception {
        // Keep stdout for the ready line alone: anything a library prints goes to stderr.
        PrintStream stdout = System.out;
        System.setOut(System.err);

        Path dir = null;
        int port = 0;
        boolean watchStdin = false;
        boolean stopWhenReady = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--dir" -> dir = Path.of(requireValue(args, ++i, "--dir"));
                case "--port" -> port = Integer.parseInt(requireValue(args, ++i, "--port"));
                case "--watch-stdin" -> watchStdin = true;
                case "--stop-when-ready" -> stopWhenReady = true;
                case "-h", "--help" -> {
                    stdout.println("usage: neo4j-local [--dir DIR] [--port PORT] [--watch-stdin] [--stop-when-ready]");
                    return;
                }
                default -> fail("unknown argument " + args[i] + " (try --help)");
            }
        }
        if (port < 0 || port > 65535) {
            fail("--port must be between 0 and 65535, got " + port);
        }
        boolean temporary = dir == null;
        Path home = temporary ? Files.createTempDirectory("neo4j-local-") : dir.toAbsolutePath();
        Files.createDirectories(home);

        String password = System.getenv(PASSWORD_ENV);
        boolean auth = password != null && !password.isEmpty();
        if (auth && password.length() < 8) {
            fail(PASSWORD_ENV + " must be at least 8 characters (Neo4j's minimum password length)");
        }

        long started = System.nanoTime();
        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.advertised_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                // No in-process connector, and no multi-second grace periods when stopping.
                .setConfig(BoltConnectorInternalSettings.enable_local_connector, false)
                .setConfig(BoltConnectorInternalSettings.connection_shutdown_wait_time, Duration.ofMillis(500))
                .setConfig(BoltConnectorInternalSettings.thread_pool_shutdown_wait_time, Duration.ofMillis(500))
                .setConfig(GraphDatabaseSettings.auth_enabled, auth)
                // Wrong-password tests must not lock the user out.
                .setConfig(GraphDatabaseSettings.auth_max_failed_attempts, 0)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(256))
                .setConfig(GraphDatabaseSettings.memory_transaction_global_max_size, ByteUnit.mebiBytes(768))
                .setConfig(GraphDatabaseSettings.memory_transaction_max_size, ByteUnit.mebiBytes(512))
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .setConfig(GraphDatabaseSettings.keep_logical_logs, "1 files")
                .build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                dbms.shutdown();
            } catch (RuntimeException e) {
                System.err.println("neo4j-local: shutdown failed: " + e);
            }
            if (temporary) {
                deleteTree(home);
            }
            stopped.countDown();
        }, "neo4j-local-shutdown"));

        GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        if (auth) {
            setPassword(system, password);
        }
        GraphDatabaseService db = dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
        if (!db.isAvailable(Duration.ofMinutes(2).toMillis())) {
            fail("the database did not become available within 2 minutes; see " + home.resolve("logs"));
        }
        int boltPort = boltPort(db, port);
        awaitListening(boltPort, Duration.ofMinutes(1));

        double seconds = (System.nanoTime() - started) / 1e9;
        System.err.printf("neo4j-local: Neo4j started in %.1f s, home %s, auth %s%n", seconds, home,
                auth ? "on (user neo4j)" : "off");
        stdout.println(READY + " bolt://127.0.0.1:" + boltPort);
        stdout.flush();
        if (stopWhenReady) {
            System.exit(0);
        }

        if (watchStdin) {
            Thread watcher = new Thread(() -> {
                try (InputStream in = System.in) {
                    byte[] buffer = new byte[256];
                    while (in.read(buffer) >= 0) {
                        // discard; only the end of input matters
                    }
                } catch (IOException ignored) {
                    // a broken pipe means the parent is gone: stop as for end of input
                }
                System.err.println("neo4j-local: standard input closed, stopping");
                System.exit(0);
            }, "neo4j-local-stdin");
            watcher.setDaemon(true);
            watcher.start();
        }
        stopped.await();
    }

    /** Sets the password of user neo4j and clears the "change on first login" flag. */
    private static void setPassword(GraphDatabaseService system, String password) {
        try {
            system.executeTransactionally(
                    "ALTER USER " + USER + " SET PASSWORD $password CHANGE NOT REQUIRED",
                    Map.of("password", password));
        } catch (RuntimeException e) {
            // A restart on the same directory with the same password: nothing to change.
            String message = String.valueOf(e.getMessage());
            if (!message.contains("Old password and new password cannot be the same")) {
                throw e;
            }
        }
    }

    private static int boltPort(GraphDatabaseService db, int configured) {
        ConnectorPortRegister ports = ((GraphDatabaseAPI) db).getDependencyResolver()
                .resolveDependency(ConnectorPortRegister.class);
        HostnamePort address = ports.getLocalAddress(ConnectorType.BOLT);
        if (address == null) {
            if (configured == 0) {
                fail("Bolt did not report its port");
            }
            return configured;
        }
        return address.getPort();
    }

    private static void awaitListening(int port, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            try (Socket socket = new Socket()) {
                socket.connect(new InetSocketAddress("127.0.0.1", port), 1000);
                return;
            } catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    fail("Bolt is not accepting connections on 127.0.0.1:" + port + ": " + e);
                }
                TimeUnit.MILLISECONDS.sleep(50);
            }
        }
    }

    private static String requireValue(String[] args, int index, String flag) {
        if (index >= args.length) {
            fail(flag + " needs a value");
        }
        return args[index];
    }

    private static void fail(String message) {
        System.err.println("neo4j-local: " + message);
        System.exit(2);
    }

    private static void deleteTree(Path root) {
        try {
            Files.walkFileTree(root, new SimpleFileVisitor<>() {
                @Override
                public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                    Files.deleteIfExists(file);
                    return FileVisitResult.CONTINUE;
                }

                @Override
                public FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
                    Files.deleteIfExists(d);
                    return FileVisitResult.CONTINUE;
                }
            });
        } catch (IOException e) {
            System.err.println("neo4j-local: could not delete " + root + ": " + e);
        }
    }
}
