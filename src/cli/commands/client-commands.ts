import type { Command } from 'commander';
import type { ApplianceStatus } from '../../status.js';
import { CliError, EXIT, type GlobalOptions, clientOf, print } from '../context.js';

/** Commands that talk to a running appliance through the client SDK. */

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new CliError(`${name} must be an integer`, 2);
  return n;
};

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

/** `sessions: initiated …; accepted …; refused …; rejected …; abandoned …[; handshake ML-DSA …]` (only what is non-zero). */
function sessionLines(s: ApplianceStatus['sessions'] | undefined): string[] {
  if (!s) return [];
  const byPosture = (o: Record<string, number>, degraded?: Record<string, number>) =>
    Object.entries(o)
      .filter(([, n]) => n > 0)
      .map(([p, n]) => `${p}=${n}${degraded?.[p] ? ` (${degraded[p]} degraded)` : ''}`)
      .join(' ') || '0';
  const byCode = (o: Record<string, number>) =>
    Object.entries(o)
      .map(([c, n]) => `${c}=${n}`)
      .join(' ') || '0';
  return [
    `sessions: initiated ${byPosture(s.initiated, s.initiatedDegraded)}; accepted ${byPosture(s.accepted)}; ` +
      `refused ${s.refused}; rejected ${byCode(s.rejected)}; abandoned ${byCode(s.abandoned)}`,
  ];
}

export function registerClientCommands(program: Command): void {
  program
    .command('status')
    .description(
      'show sources, health, DRBG, keys, QKD links and degraded flags; exit 0 healthy, 3 degraded, 4 unreachable',
    )
    .action(async (_o, cmd: Command) => {
      const opts = globals(cmd);
      const s = await (await clientOf(opts)).status();
      print(opts, s, () => {
        const lines = [
          `qkm ${s.version} (${s.mode}, region ${s.region})${s.nodeId ? ` node ${s.nodeId}` : ''}`,
          s.degraded
            ? `DEGRADED: ${s.reasons.join('; ')}`
            : 'not degraded: outputs are backed by healthy quantum entropy',
          'sources:',
          ...s.entropy.sources.map(
            (x) =>
              `  ${x.id} [${x.kind}${x.simulated ? ', simulated' : ''}] ${x.state}` +
              `${x.reason ? ` (${x.reason})` : ''} H=${x.claimedMinEntropy}` +
              `${x.estimatedMinEntropy !== undefined ? ` est=${x.estimatedMinEntropy.toFixed(3)}` : ''}`,
          ),
          `drbg: ${s.entropy.drbg.name} seed=${s.entropy.drbg.seedOrigin} reseed_counter=${s.entropy.drbg.reseedCounter}`,
          `keys: ${Object.entries(s.keys)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`,
          ...s.qkd.map(
            (l) =>
              `qkd ${l.peerSaeId} via ${l.kmeId}: ${l.up ? 'up' : 'down'}` +
              `${l.storedKeyCount !== undefined ? ` stored_key_count=${l.storedKeyCount}` : ''}` +
              `${l.lastError ? ` last error: ${l.lastError}` : ''}`,
          ),
          ...sessionLines(s.sessions),
          ...(s.audit ? [`audit: ${s.audit.records} records, sealed through ${s.audit.sealedThrough}`] : []),
        ];
        return lines.join('\n');
      });
      // Monitoring scripts branch on the code: degraded is an answer, not a failure to get one.
      if (s.degraded) process.exitCode = EXIT.DEGRADED;
    });

  program
    .command('entropy')
    .description('fetch random bytes with their provenance')
    .requiredOption('--bytes <n>', 'number of bytes', int('--bytes'))
    .option('--require <what>', 'quantum | any (quantum: fail rather than serve degraded)', 'any')
    .option('--prediction-resistance', 'reseed from the sources before generating')
    .option('--hex', 'print hex (default base64)')
    .action(
      async (o: { bytes: number; require: string; predictionResistance?: boolean; hex?: boolean }, cmd) => {
        const opts = globals(cmd);
        if (o.require !== 'quantum' && o.require !== 'any')
          throw new CliError('--require must be quantum or any', 2);
        const r = await (await clientOf(opts)).entropy(o.bytes, {
          require: o.require,
          ...(o.predictionResistance ? { predictionResistance: true } : {}),
        });
        const encoded = Buffer.from(r.data).toString(o.hex ? 'hex' : 'base64');
        print(
          opts,
          { data: encoded, encoding: o.hex ? 'hex' : 'base64', bytes: r.bytes, provenance: r.provenance },
          () => encoded,
        );
        // stdout is exactly the bytes, so that `$(qkm entropy --bytes 32 --hex)` is usable as is;
        // where they came from goes to stderr (not with --quiet).
        if (!opts.json && !opts.quiet) {
          process.stderr.write(
            `# ${r.bytes} bytes from ${r.provenance.drbg.name}, seed ${r.provenance.seedOrigin}` +
              `${r.provenance.degraded ? `, DEGRADED: ${r.provenance.reason}` : ''}\n`,
          );
        }
      },
    );

  const agent = program.command('agent').description('manage the agents (API callers) and their tokens');
  agent
    .command('add <name>')
    .description('add an agent and print its token (shown once)')
    .option('--scopes <list>', 'comma-separated: entropy,keys,sessions,admin', 'entropy,keys,sessions')
    .option('--aid <user@domain:name>', 'governed agent id (contact policies speak about it)')
    .action(async (name: string, o: { scopes: string; aid?: string }, cmd) => {
      const opts = globals(cmd);
      const r = await (await clientOf(opts, true)).agents.add(
        name,
        o.scopes.split(',').map((s) => s.trim()),
        o.aid,
      );
      print(
        opts,
        r,
        () =>
          `${r.agent.name}${r.agent.aid ? ` (${r.agent.aid})` : ''} [${r.agent.scopes.join(',')}]\ntoken: ${r.token}`,
      );
    });
  agent
    .command('list')
    .description('list agents')
    .action(async (_o, cmd) => {
      const opts = globals(cmd);
      const agents = await (await clientOf(opts, true)).agents.list();
      print(opts, agents, () =>
        agents
          .map((a) => `${a.name}\t${a.scopes.join(',')}\t${a.revoked ? `revoked ${a.revoked}` : 'active'}`)
          .join('\n'),
      );
    });
  agent
    .command('revoke <name>')
    .description("revoke an agent's token")
    .option('--force', 'revoke even the last agent with the admin scope (see README, admin-token recovery)')
    .action(async (name: string, o: { force?: boolean }, cmd) => {
      const opts = globals(cmd);
      const a = await (await clientOf(opts, true)).agents.revoke(name, o.force ? { force: true } : {});
      print(opts, a, () => `revoked ${a.name}`);
    });

  const keys = program.command('keys').description('single-use keys made from quantum entropy');
  keys
    .command('create')
    .description('create a key (stored encrypted; take it once with `keys take`)')
    .option('--size <bytes>', 'key size in bytes (16-1024)', int('--size'), 32)
    .option('--ttl <seconds>', 'lifetime in seconds (1 to 2592000; default from the config)', int('--ttl'))
    .option('--label <text>', 'free-text label')
    .option('--require <what>', 'quantum | any')
    .action(async (o: { size: number; ttl?: number; label?: string; require?: 'quantum' | 'any' }, cmd) => {
      const opts = globals(cmd);
      const meta = await (await clientOf(opts)).keys.create({
        size: o.size,
        ...(o.ttl !== undefined ? { ttlSeconds: o.ttl } : {}),
        ...(o.label !== undefined ? { label: o.label } : {}),
        ...(o.require !== undefined ? { require: o.require } : {}),
      });
      print(
        opts,
        meta,
        () =>
          `${meta.id}\t${meta.size} bytes\texpires ${meta.expires ?? 'never'}` +
          `${meta.provenance.degraded ? `\tDEGRADED: ${meta.provenance.reason}` : ''}`,
      );
    });
  keys
    .command('take <id>')
    .description('take a key: prints its material once; it is destroyed on the appliance')
    .option('--hex', 'print hex (default base64)')
    .action(async (id: string, o: { hex?: boolean }, cmd) => {
      const opts = globals(cmd);
      const k = await (await clientOf(opts)).keys.take(id);
      const encoded = Buffer.from(k.key).toString(o.hex ? 'hex' : 'base64');
      print(opts, { ...k, key: encoded }, () => encoded);
    });
  keys
    .command('list')
    .description('key metadata (never material)')
    .option('--state <state>', 'active | taken | expired')
    .option('--limit <n>', 'page size', int('--limit'))
    .option('--after <id>', 'list ids after this one')
    .action(async (o: { state?: 'active' | 'taken' | 'expired'; limit?: number; after?: string }, cmd) => {
      const opts = globals(cmd);
      const list = await (await clientOf(opts)).keys.list(o);
      print(opts, list, () =>
        list.length === 0
          ? '(no keys)'
          : list.map((k) => `${k.id}\t${k.state}\t${k.size}B\t${k.created}\t${k.label ?? ''}`).join('\n'),
      );
    });
}
