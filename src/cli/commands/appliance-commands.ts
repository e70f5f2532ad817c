import type { Command } from 'commander';
import { type QkmConfig, loadConfig } from '../../core/config.js';
import { mallocWarning } from '../../core/malloc.js';
import { CliError, type GlobalOptions, print, setLongRunning } from '../context.js';

/** `qkm start` and `qkm init`: they own the data directory, so they run in this process. */

interface StartFlags {
  port?: string;
  host?: string;
  mode?: string;
}

function configFrom(opts: GlobalOptions & StartFlags): QkmConfig {
  const port = opts.port === undefined ? undefined : Number(opts.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
    throw new CliError('--port must be a port number', 2);
  }
  return loadConfig({
    overrides: {
      ...(port !== undefined ? { port } : {}),
      ...(opts.host ? { host: opts.host } : {}),
      ...(opts.data ? { dataDir: opts.data } : {}),
      ...(opts.mode ? { mode: opts.mode as QkmConfig['mode'] } : {}),
    },
  });
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function registerApplianceCommands(program: Command): void {
  program
    .command('start')
    .description('run the appliance (simulator mode and 127.0.0.1:7300 unless configured otherwise)')
    .option('--port <port>', 'listen port (default $QKM_PORT or 7300)')
    .option('--host <host>', 'listen address (default 127.0.0.1)')
    .option('--mode <mode>', 'simulator | hardware (default $QKM_MODE or simulator)')
    .action(async (_o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions & StartFlags;
      const config = configFrom(opts);
      if (!LOOPBACK.has(config.host)) {
        process.stderr.write(
          `qkm: WARNING: listening on ${config.host}, not loopback; agents elsewhere can reach the API (tokens still required)\n`,
        );
      }
      const appliance = await startAppliance(config);
      // Printed with the start-up lines (and as `warnings` under --json), not logged: it is
      // about how this process was launched, which the operator fixes before the next start.
      const malloc = mallocWarning();
      setLongRunning();
      const info = {
        url: appliance.url,
        mode: config.mode,
        dataDir: config.dataDir,
        nodeId: appliance.identity.nodeId,
        tokenFile: appliance.tokenFiles.default,
        adminTokenFile: appliance.tokenFiles.admin,
        ...(malloc ? { warnings: [malloc] } : {}),
      };
      print(opts, info, () =>
        [
          `qkm listening on ${info.url} (${config.mode} mode, data in ${config.dataDir})`,
          `agent token: ${info.tokenFile}`,
          `admin token: ${info.adminTokenFile}`,
          `try: curl -H "Authorization: Bearer $(cat ${info.tokenFile})" '${info.url}/v1/entropy?bytes=32'`,
          ...(malloc ? [`WARNING: ${malloc}`] : []),
        ].join('\n'),
      );
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        appliance.logger.info({ signal }, 'stopping');
        await appliance.close();
        process.exit(0);
      };
      // A bug in one request's async path must not take the appliance down for every agent:
      // log it (class and code only; messages may quote request data) and keep serving.
      process.on('unhandledRejection', (err) => {
        appliance.logger.error(
          { err: { type: (err as Error)?.name, code: (err as { code?: string })?.code } },
          'unhandled rejection',
        );
      });
      process.once('SIGINT', () => void stop('SIGINT'));
      process.once('SIGTERM', () => void stop('SIGTERM'));
      // SIGHUP (a closed terminal, `kill -HUP`) stops cleanly too, with the audit log sealed,
      // instead of Node's default of dying on the spot with the last records unsigned. It does
      // not reload: the KEK, identity and sources are opened once; restart to apply new config.
      process.once('SIGHUP', () => void stop('SIGHUP'));
    });

  program
    .command('init')
    .description('create the data dir, key-encryption key, agent tokens and node identity, then exit')
    .option('--mode <mode>', 'simulator | hardware')
    .action(async (_o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions & StartFlags;
      const config = { ...configFrom(opts), host: '127.0.0.1', port: 0 };
      const appliance = await startAppliance(config);
      const info = {
        dataDir: config.dataDir,
        nodeId: appliance.identity.nodeId,
        region: appliance.identity.region,
        identityDegraded: appliance.identity.provenance.degraded,
        tokenFile: appliance.tokenFiles.default,
        adminTokenFile: appliance.tokenFiles.admin,
      };
      await appliance.close();
      print(opts, info, () =>
        [
          `initialised ${info.dataDir}`,
          `node id ${info.nodeId} (region ${info.region})${info.identityDegraded ? ' — identity seeded WITHOUT quantum entropy (degraded)' : ''}`,
          `agent token: ${info.tokenFile}`,
          `admin token: ${info.adminTokenFile}`,
        ].join('\n'),
      );
    });
}

/**
 * The appliance (every driver, the store, fastify, the PQC backends) loads only for the commands
 * that run it: client commands and `--version` start in a fraction of the time.
 */
async function startAppliance(config: QkmConfig) {
  const [{ Appliance }, { simulatedQuantis }] = await Promise.all([
    import('../../app.js'),
    import('../simulator.js'),
  ]);
  return Appliance.start({ simulator: simulatedQuantis, config });
}
