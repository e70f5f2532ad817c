import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { readTokenFile } from '../../core/datadir.js';
import { ProviderClient } from '../../provider/client.js';
import { type ProviderConfig, loadProviderConfig } from '../../provider/config.js';
import { IDENTITY_FILE, ProviderService } from '../../provider/service.js';
import { CliError, type GlobalOptions, clientOf, print, setLongRunning } from '../context.js';

/**
 * `qkm provider …` (issue #12): run the Provider (its own process, port and data dir), enrol a
 * node with it, show its status; and, on a node, publish to it now (`sync`).
 */

interface ProviderFlags {
  dir?: string;
  port?: string;
  host?: string;
  providerUrl?: string;
  providerKey?: string;
  adminToken?: string;
  bundle?: string;
  label?: string;
  domains?: string;
}

function dirOf(o: ProviderFlags): string {
  return resolve(o.dir ?? process.env.QKM_PROVIDER_DATA ?? '.qkm-provider');
}

/** The Provider's URL and pinned key: flags first, else `<dir>/provider-identity.json` (same host). */
async function adminClient(o: ProviderFlags): Promise<ProviderClient> {
  let file: { url?: string; ml_dsa_65_public_key?: string } = {};
  try {
    file = JSON.parse(await readFile(join(dirOf(o), IDENTITY_FILE), 'utf8'));
  } catch {
    // No local Provider data dir: the flags must say it all.
  }
  const url = o.providerUrl ?? process.env.QKM_PROVIDER_URL ?? file.url;
  const publicKey = o.providerKey ?? file.ml_dsa_65_public_key;
  if (!url || !publicKey)
    throw new CliError(
      `need the Provider's URL and key: --provider-url and --provider-key, or --dir <provider data dir> (${IDENTITY_FILE})`,
      2,
    );
  const adminToken =
    o.adminToken ??
    process.env.QKM_PROVIDER_TOKEN ??
    (await readTokenFile(join(dirOf(o), 'tokens', 'admin')));
  return new ProviderClient({ url, publicKey, adminToken });
}

const dirOption = [
  '--dir <dir>',
  'Provider data dir (default $QKM_PROVIDER_DATA or ./.qkm-provider)',
] as const;

/** The options of the administrator's commands: where the Provider is, its key, the token. */
function adminOptions(cmd: Command): Command {
  return cmd
    .option(...dirOption)
    .option('--provider-url <url>', 'the Provider (default: from --dir)')
    .option('--provider-key <base64url>', "the Provider's ML-DSA-65 key to pin (default: from --dir)")
    .option(
      '--admin-token <token>',
      'Provider admin token (default $QKM_PROVIDER_TOKEN or <dir>/tokens/admin)',
    );
}

export function registerProviderCommands(program: Command): void {
  const provider = program.command('provider').description('the Provider: directory of governed agents');

  provider
    .command('start')
    .description('run the Provider (127.0.0.1:7400, LevelDB in its data dir unless provider.json names etcd)')
    .option(...dirOption)
    .option('--port <port>', 'listen port (default $QKM_PROVIDER_PORT or 7400)')
    .option('--host <host>', 'listen address (default 127.0.0.1)')
    .action(async (_o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions & ProviderFlags;
      const port = opts.port === undefined ? undefined : Number(opts.port);
      if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535))
        throw new CliError('--port must be a port number', 2);
      const overrides: Partial<ProviderConfig> = { dataDir: dirOf(opts) };
      if (port !== undefined) overrides.port = port;
      if (opts.host) overrides.host = opts.host;
      const config = loadProviderConfig({ overrides });
      if (!['127.0.0.1', '::1', 'localhost'].includes(config.host))
        process.stderr.write(
          `qkm: WARNING: the Provider listens on ${config.host}, not loopback (node requests are still signed)\n`,
        );
      const service = await ProviderService.start({ config });
      // A bug in one request's async path must not take the directory down for every node.
      process.on('unhandledRejection', (err) => {
        service.logger.error(
          { err: { type: (err as Error)?.name, code: (err as { code?: string })?.code } },
          'unhandled rejection',
        );
      });
      setLongRunning();
      const info = {
        url: service.url,
        providerId: service.identity.providerId,
        publicKey: Buffer.from(service.identity.publicKey).toString('base64url'),
        dataDir: config.dataDir,
        store: config.store?.backend ?? 'level',
        adminTokenFile: service.adminTokenFile,
      };
      print(opts, info, () =>
        [
          `qkm provider listening on ${info.url} (store: ${info.store}, data in ${info.dataDir})`,
          `provider id ${info.providerId}`,
          `admin token: ${info.adminTokenFile}`,
          `nodes pin: "provider": {"url": "${info.url}", "publicKey": "<${join(info.dataDir, IDENTITY_FILE)}>"}`,
        ].join('\n'),
      );
      let stopping = false;
      const stop = async () => {
        if (stopping) return;
        stopping = true;
        await service.close();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
      process.once('SIGHUP', () => void stop());
    });

  adminOptions(provider.command('enrol-node'))
    .alias('enroll-node')
    .description('enrol a node by its identity bundle (--bundle file, else fetched from the node at --url)')
    .option('--bundle <file>', "the node's identity bundle (JSON, from `qkm identity --json`)")
    .option('--label <label>', 'a name for the node')
    .option(
      '--domains <list>',
      'comma-separated domains whose agent ids the node may register (default: any)',
    )
    .action(async (_o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions & ProviderFlags;
      const client = await adminClient(opts);
      const bundle: unknown = opts.bundle
        ? JSON.parse(await readFile(resolve(opts.bundle), 'utf8'))
        : await (await clientOf(opts)).identity();
      const domains = opts.domains
        ?.split(',')
        .map((d) => d.trim())
        .filter((d) => d !== '');
      const node = await client.enrol(bundle, opts.label, domains);
      print(opts, node, () => `enrolled node ${node.node_id}${node.label ? ` (${node.label})` : ''}`);
    });

  adminOptions(provider.command('remove-node <nodeId>'))
    .description('remove a node (compromised, retired): its requests are refused, its agents get no bundles')
    .action(async (nodeId: string, _o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions & ProviderFlags;
      const r = await (await adminClient(opts)).removeNode(nodeId);
      print(opts, r, () => `removed node ${r.removed}`);
    });

  adminOptions(provider.command('status'))
    .description("the Provider's identity, counts and enrolled nodes")
    .action(async (_o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions & ProviderFlags;
      const client = await adminClient(opts);
      const [identity, status, nodes] = await Promise.all([
        client.identity(),
        client.status(),
        client.nodes(),
      ]);
      const out = { ...status, publicKey: identity.ml_dsa_65_public_key, enrolled: nodes };
      print(opts, out, () =>
        [
          `provider ${String(status.provider_id)} (${String(status.store)}), up since ${String(status.started)}`,
          `nodes ${String(status.nodes)}, agents ${String(status.agents)}, one-time prekeys ${String(status.otks)}, last-resort prekeys ${String(status.lastResort)}`,
          ...nodes.map((n) => `  node ${n.node_id}${n.label ? ` (${n.label})` : ''} enrolled ${n.enrolled}`),
          `public key (nodes pin it as provider.publicKey): ${identity.ml_dsa_65_public_key}`,
        ].join('\n'),
      );
    });

  provider
    .command('sync')
    .description('on a node: publish its governed agents, policies and prekeys to its Provider now')
    .action(async (_o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const report = await (await clientOf(opts, true)).provider.sync<{
        agents: Array<{ aid: string; published: number; otks: number; lastResortUploaded: boolean }>;
      }>();
      print(opts, report, () =>
        report.agents.length === 0
          ? 'no governed agents to publish (qkm agent add --aid …)'
          : report.agents
              .map(
                (a) =>
                  `${a.aid}: ${a.otks} one-time prekeys at the Provider (${a.published} published now)${a.lastResortUploaded ? ', last-resort prekey uploaded' : ''}`,
              )
              .join('\n'),
      );
    });
}
