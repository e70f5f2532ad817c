import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  type AuditRecord,
  type AuditVerifyResult,
  parseJsonLines,
  toJsonLines,
  verifyAuditLog,
} from '../../audit/index.js';
import type { AccessToken } from '../../client/client.js';
import { fromBase64url } from '../../session/encoding.js';
import { POSTURES, type Posture, isPosture } from '../../session/posture.js';
import { CliError, type GlobalOptions, clientOf, print } from '../context.js';

/** Identity, peers, posture policy, sessions and the audit log — all through the running appliance. */

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new CliError(`${file}: ${(err as Error).message}`);
  }
}

function posture(v: string | undefined): Posture | undefined {
  if (v === undefined) return undefined;
  if (!isPosture(v)) throw new CliError(`posture must be one of ${POSTURES.join(', ')}`, 2);
  return v;
}

export function registerSessionCommands(program: Command): void {
  const identity = program.command('identity').description("this node's identity (ML-DSA-65 + ML-KEM-768)");
  identity
    .command('export')
    .description('print (or write) the self-signed public bundle to give to peers')
    .option('--out <file>', 'write the bundle to a file')
    .action(async (o: { out?: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const bundle = await (await clientOf(opts)).identity();
      const text = `${JSON.stringify(bundle, null, 2)}\n`;
      if (o.out) {
        await writeFile(o.out, text);
        print(
          opts,
          { written: o.out, node_id: bundle.node_id },
          () => `wrote ${o.out} (node ${bundle.node_id})`,
        );
      } else {
        process.stdout.write(text);
      }
    });

  const peers = program
    .command('peers')
    .description(
      'pinned peers: plain sessions need one; governed sessions may use a node the Provider vouches for',
    );
  peers
    .command('add <bundle.json>')
    .description("pin a peer from its bundle file (verifies the bundle's signature)")
    .option('--label <text>', 'free-text label')
    .option('--min-posture <posture>', 'never accept or offer less than this with the peer')
    .action(async (file: string, o: { label?: string; minPosture?: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      let bundle: unknown;
      try {
        bundle = JSON.parse(await readFile(file, 'utf8'));
      } catch (err) {
        throw new CliError(`${file}: ${(err as Error).message}`);
      }
      const client = await clientOf(opts, true);
      const min = posture(o.minPosture);
      const rec = await client.peers.add(bundle, {
        ...(o.label !== undefined ? { label: o.label } : {}),
        ...(min !== undefined ? { minPosture: min } : {}),
      });
      print(
        opts,
        rec,
        () =>
          `pinned ${rec.node_id} (region ${rec.bundle.region}${rec.bundle.sae_id ? `, SAE ${rec.bundle.sae_id}` : ''})`,
      );
    });
  peers
    .command('list')
    .description('list pinned peers')
    .action(async (_o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const list = await (await clientOf(opts)).peers.list();
      print(opts, list, () =>
        list.length === 0
          ? '(no peers)'
          : list
              .map((p) => `${p.node_id}\t${p.bundle.region}\t${p.bundle.sae_id ?? '-'}\t${p.pinned_at}`)
              .join('\n'),
      );
    });
  peers
    .command('remove <node-id>')
    .description('unpin a peer')
    .action(async (id: string, _o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const r = await (await clientOf(opts, true)).peers.remove(id);
      print(opts, r, () => `removed ${r.removed}`);
    });

  program
    .command('policy')
    .description('the posture policy')
    .command('explain <peer>')
    .description(
      'print the decision table for a pinned peer: each posture, its scores, why admissible or not',
    )
    .option('--min-posture <posture>', 'evaluate as if this minimum were requested')
    .action(async (peer: string, o: { minPosture?: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const min = posture(o.minPosture);
      const r = await (await clientOf(opts)).policy.explain(peer, min ? { minPosture: min } : {});
      print(opts, r, () =>
        [
          `peer ${r.peer}: ${r.chosen ? `chooses ${r.chosen}` : 'NO admissible posture'}${r.minimum ? ` (minimum ${r.minimum})` : ''}`,
          ...(r.reason ? [`reason: ${r.reason}`] : []),
          `${'posture'.padEnd(14)} ${'sec'.padStart(5)} ${'lat'.padStart(5)} ${'cost'.padStart(5)} ${'score'.padStart(7)}  admissible  why`,
          ...r.table.map(
            (row) =>
              `${row.posture.padEnd(14)} ${row.sec.toFixed(2).padStart(5)} ${row.lat.toFixed(2).padStart(5)} ` +
              `${row.cost.toFixed(2).padStart(5)} ${row.score.toFixed(3).padStart(7)}  ${(row.admissible ? 'yes' : 'no').padEnd(10)}  ${row.why}`,
          ),
        ].join('\n'),
      );
    });

  const session = program.command('session').description('hybrid session keys with a pinned peer');
  session
    .command('initiate <peer>')
    .description('start a session; prints the key (base64) and the handshake to hand to the peer')
    .option('--responder-agent <name>', 'the agent on the peer node that may accept (signed in)')
    .option(
      '--responder-aid <aid>',
      'governed session (qkm/v2): the responder by governed id; the calling agent needs one too',
    )
    .option('--prekey <file>', "governed: the responder's signed prekey (JSON, from GET /v1/prekeys/:aid)")
    .option('--min-posture <posture>', 'refuse anything weaker')
    .option('--context <text>', 'application context bound into the transcript')
    .action(
      async (
        peer: string,
        o: {
          responderAgent?: string;
          responderAid?: string;
          prekey?: string;
          minPosture?: string;
          context?: string;
        },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals() as GlobalOptions;
        const min = posture(o.minPosture);
        if (o.responderAgent === undefined && o.responderAid === undefined)
          throw new CliError('give --responder-agent or --responder-aid', 2);
        const prekey = o.prekey === undefined ? undefined : await readJson(o.prekey);
        const r = await (await clientOf(opts)).sessions.initiate({
          peer,
          ...(o.responderAgent !== undefined ? { responderAgent: o.responderAgent } : {}),
          ...(o.responderAid !== undefined ? { responderAid: o.responderAid } : {}),
          ...(prekey !== undefined ? { prekey } : {}),
          ...(min ? { minPosture: min } : {}),
          ...(o.context !== undefined ? { context: o.context } : {}),
        });
        const out = { ...r, key: Buffer.from(r.key).toString('base64') };
        print(opts, out, () =>
          [
            `session ${r.session_id} posture ${r.posture}${r.provenance.degraded ? ` DEGRADED: ${r.provenance.reason}` : ''}`,
            `key ${out.key}`,
            `handshake ${r.handshake}`,
          ].join('\n'),
        );
      },
    );
  session
    .command('accept <handshake>')
    .description("accept a peer's handshake; prints the key and the confirmation tag for the initiator")
    .action(async (handshake: string, _o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const r = await (await clientOf(opts)).sessions.accept(handshake);
      const out = { ...r, key: Buffer.from(r.key).toString('base64') };
      print(opts, out, () =>
        [
          `session ${r.session_id} posture ${r.posture}`,
          `key ${out.key}`,
          `confirm ${r.confirm}`,
          // The access token of a governed session, for the initiator's `session confirm --access-token`.
          ...(r.token ? [`token ${JSON.stringify(r.token)}`] : []),
        ].join('\n'),
      );
    });
  session
    .command('confirm <session-id> <tag>')
    .description("check the responder's confirmation tag")
    .option(
      '--access-token <json>',
      "governed: the responder's access token (the JSON `session accept` printed)",
    )
    .action(async (id: string, tag: string, o: { accessToken?: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      let token: AccessToken | undefined;
      if (o.accessToken !== undefined) {
        try {
          token = JSON.parse(o.accessToken) as AccessToken;
        } catch {
          throw new CliError('--access-token must be the JSON object `session accept` printed', 2);
        }
      }
      const r = await (await clientOf(opts)).sessions.confirm(id, tag, token);
      const shown = { ...r, ...(r.key ? { key: Buffer.from(r.key).toString('base64') } : {}) };
      print(opts, shown, () =>
        [
          `session ${r.session_id} confirmed`,
          ...(r.token ? [`token ${r.token.id} kept (expires ${r.token.expires})`] : []),
        ].join('\n'),
      );
    });
  session
    .command('resume <token-id>')
    .description('open a session with an access token (no ML-KEM/ML-DSA); hand the message to the responder')
    .action(async (tokenId: string, _o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const r = await (await clientOf(opts)).sessions.resume(tokenId);
      print(opts, r, () => [`resume ${r.resume_id} with ${r.peer_aid}`, `message ${r.resume}`].join('\n'));
    });
  session
    .command('resume-accept <message>')
    .description("accept a resume message (responder); prints K' and the answer for the initiator")
    .action(async (message: string, _o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const r = await (await clientOf(opts)).sessions.acceptResume(message);
      const out = { ...r, key: Buffer.from(r.key).toString('base64') };
      print(opts, out, () =>
        [
          `session ${r.session_id} (token ${r.token_id}, use ${r.use}, ${r.remaining} left)`,
          `key ${out.key}`,
          `answer ${r.answer}`,
        ].join('\n'),
      );
    });
  session
    .command('resume-complete <resume-id> <answer>')
    .description("finish a resumption (initiator): checks the responder's tag, prints K'")
    .action(async (id: string, answer: string, _o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const r = await (await clientOf(opts)).sessions.completeResume(id, answer);
      const out = { ...r, key: Buffer.from(r.key).toString('base64') };
      print(opts, out, () =>
        [`session ${r.session_id} (token ${r.token_id}, use ${r.use})`, `key ${out.key}`].join('\n'),
      );
    });
  session
    .command('tokens')
    .description('the access tokens this agent holds')
    .action(async (_o, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const list = await (await clientOf(opts)).sessions.tokens();
      print(opts, list, () =>
        list.length === 0
          ? '(no tokens)'
          : list.map((t) => `${t.token_id}\t${t.peer_aid}\t${t.used}/${t.max_uses}\t${t.expires}`).join('\n'),
      );
    });

  const audit = program.command('audit').description('the tamper-evident audit log');
  audit
    .command('export')
    .description('print the audit log as JSON lines')
    .option('--out <file>', 'write to a file')
    .action(async (o: { out?: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const records = await fetchAll(opts);
      const text = toJsonLines(records);
      if (o.out) await writeFile(o.out, text);
      else process.stdout.write(text);
    });
  audit
    .command('verify')
    .description('verify the chain and the ML-DSA seals, from the appliance or a file exported earlier')
    .option('--file <jsonl>', 'verify an exported file instead of fetching the log')
    .option('--public-key <base64url>', "signer's ML-DSA-65 public key (default: this node's identity)")
    .option('--require-sealed', 'fail if the last records are not yet covered by a seal')
    .action(async (o: { file?: string; publicKey?: string; requireSealed?: boolean }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOptions;
      const records = o.file
        ? (parseJsonLines(await readFile(o.file, 'utf8')) as AuditRecord[])
        : await fetchAll(opts);
      const pk = o.publicKey ?? (await (await clientOf(opts)).identity()).ml_dsa_65_public_key;
      const result = verifyAuditLog(records, fromBase64url(pk, 'public key'), {
        requireSealed: o.requireSealed ?? false,
      });
      print(opts, result, () => auditVerdict(result));
      if (!result.ok) process.exitCode = 1;
      // Nothing signed at all: the chain alone proves nothing against someone who can write the
      // store (strip the seals, rehash). Loud, and a distinct exit code.
      else if (result.count > 0 && result.sealedThrough === 0) process.exitCode = 2;
    });
}

/** What `qkm audit verify` prints: OK only for what a seal vouches for; the rest said loudly. */
export function auditVerdict(result: AuditVerifyResult): string {
  if (!result.ok) return `audit log BROKEN at seq ${result.seq}: ${result.reason}`;
  if (result.count > 0 && result.sealedThrough === 0) {
    return `audit log UNSEALED: none of its ${result.count} records is covered by a valid seal — the chain is intact but proves nothing against anyone who can write the store`;
  }
  const lines = [
    `audit log OK: ${result.count} records, sealed through ${result.sealedThrough}, ${result.unsealed} not yet sealed`,
  ];
  if (result.unsealed > 0) {
    lines.push(`WARNING: records ${result.sealedThrough + 2}-${result.count} are NOT signed (unsealed)`);
  }
  for (const r of result.unattested ?? []) {
    lines.push(
      `WARNING: records ${r.from_seq}-${r.through_seq} were found unsealed when the log was opened (audit.unsealed_tail_found): later seals do not vouch for them`,
    );
  }
  return lines.join('\n');
}

async function fetchAll(opts: GlobalOptions): Promise<AuditRecord[]> {
  const client = await clientOf(opts, true);
  const out: AuditRecord[] = [];
  for (;;) {
    const page = await client.audit.export<AuditRecord>({ after: out.length, limit: 1000 });
    out.push(...page);
    if (page.length < 1000) return out;
  }
}
