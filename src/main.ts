import { createApp } from './app.js';
import { loadConfig } from './config.js';
import { ConfigError, describeError } from './errors.js';
import { createLogger } from './log.js';

/**
 * Process entry point: read the configuration once, start the supervisor, stop it on SIGTERM/SIGINT and exit 0.
 * A configuration error exits 2 with a message naming the bad settings; a failed start or a stop that overruns
 * SHUTDOWN_TIMEOUT_MS exits 1.
 */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const root = createLogger(config.logLevel, { service: 'token-grades' });
  // The app binds its replica to every line it logs; the process's own lines here name it the same way.
  const log = root.child({ replica: config.replicaId });
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.fatal({ err }, 'unhandled rejection');
    process.exit(1);
  });

  let app;
  try {
    app = await createApp(config, { log: root, onFatal: () => shutdown('fatal', 1) });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let stopping = false;
  const shutdown = (signal: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timed out');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    app.stop().then(
      () => {
        log.info('stopped');
        process.exit(code);
      },
      (err: unknown) => {
        log.error({ err: describeError(err) }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  try {
    await app.start();
  } catch (err) {
    log.fatal({ err: describeError(err) }, 'start failed');
    process.exit(1);
  }
  log.info(app.summary(), 'ready');
}

await main();
