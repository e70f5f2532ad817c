import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';

/**
 * Starts a real etcd cluster (Debian `etcd-server`, installed by .ci/run) on free loopback ports
 * in a temp dir, for tests and benches. Members can be killed (SIGKILL), restarted on their data
 * dir, and frozen (SIGSTOP — to the others a frozen member is a partitioned one).
 */

export const ETCD_BIN = process.env.QKM_ETCD_BIN ?? 'etcd';

/** Why etcd tests cannot run here, or undefined if they can. Under CI the binary is required. */
export function etcdUnavailableReason(): string | undefined {
  try {
    execFileSync(ETCD_BIN, ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    const reason = `etcd binary "${ETCD_BIN}" not found (apt-get install etcd-server)`;
    if (process.env.CI === 'true') throw new Error(`${reason}: required under CI`);
    return reason;
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export interface EtcdTlsFiles {
  ca: string;
  /** Server certificate of the members (SAN 127.0.0.1). */
  serverCert: string;
  serverKey: string;
}

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  proc: ChildProcess | undefined;
}

/** Every member process this test process started: killed on exit so none outlives a failed run. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export class EtcdCluster {
  readonly dir: string;
  readonly members: Member[];
  readonly #tls: EtcdTlsFiles | undefined;
  readonly #token: string;

  private constructor(dir: string, members: Member[], tls: EtcdTlsFiles | undefined) {
    this.dir = dir;
    this.members = members;
    this.#tls = tls;
    this.#token = `qkm-test-${process.pid}-${Date.now()}`;
  }

  /** Starts `size` members (default 3) and waits until the cluster answers a write. */
  static async start(options: { size?: number; tls?: EtcdTlsFiles } = {}): Promise<EtcdCluster> {
    const size = options.size ?? 3;
    const dir = await mkdtemp(join(tmpdir(), 'qkm-etcd-'));
    const members: Member[] = [];
    for (let i = 0; i < size; i++) {
      members.push({
        name: `m${i}`,
        clientPort: await freePort(),
        peerPort: await freePort(),
        dataDir: join(dir, `m${i}`),
        proc: undefined,
      });
    }
    const cluster = new EtcdCluster(dir, members, options.tls);
    try {
      for (let i = 0; i < size; i++) cluster.#spawn(i);
      if (!options.tls) await cluster.waitHealthy();
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  get scheme(): string {
    return this.#tls ? 'https' : 'http';
  }

  endpoint(i: number): string {
    return `${this.scheme}://127.0.0.1:${this.members[i]!.clientPort}`;
  }

  get endpoints(): string[] {
    return this.members.map((_, i) => this.endpoint(i));
  }

  #spawn(i: number): void {
    const m = this.members[i]!;
    const initial = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(',');
    const args = [
      '--name',
      m.name,
      '--data-dir',
      m.dataDir,
      '--listen-client-urls',
      this.endpoint(i),
      '--advertise-client-urls',
      this.endpoint(i),
      '--listen-peer-urls',
      `http://127.0.0.1:${m.peerPort}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${m.peerPort}`,
      '--initial-cluster',
      initial,
      '--initial-cluster-token',
      this.#token,
      '--initial-cluster-state',
      'new',
      // Shared 2-core CI machines: default Raft timing (100 ms heartbeat, 1 s election) tolerates load.
      '--heartbeat-interval',
      '100',
      '--election-timeout',
      '1000',
      '--logger',
      'zap',
      '--log-level',
      'error',
    ];
    if (this.#tls) {
      args.push(
        '--cert-file',
        this.#tls.serverCert,
        '--key-file',
        this.#tls.serverKey,
        '--trusted-ca-file',
        this.#tls.ca,
        '--client-cert-auth',
      );
    }
    const log = createWriteStream(join(this.dir, `${m.name}.log`), { flags: 'a' });
    const proc = spawn(ETCD_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr?.pipe(log);
    live.add(proc);
    proc.on('exit', () => {
      live.delete(proc);
      if (m.proc === proc) m.proc = undefined;
    });
    m.proc = proc;
  }

  /** Waits until a plain client over all endpoints can write (quorum and a leader). */
  async waitHealthy(ms = 20_000): Promise<void> {
    const client = new Etcd3({ hosts: this.endpoints, dialTimeout: 1000 });
    const end = Date.now() + ms;
    try {
      for (;;) {
        try {
          await client
            .put('qkm-test/health')
            .value('ok')
            .options({ deadline: Date.now() + 1000 })
            .exec();
          return;
        } catch (err) {
          if (Date.now() > end) throw new Error(`etcd cluster not healthy after ${ms} ms: ${String(err)}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      client.close();
    }
  }

  /** SIGKILLs member `i` (kill -9) and waits for it to exit. */
  async kill(i: number): Promise<void> {
    const proc = this.members[i]!.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    if (proc.signalCode === null) process.kill(proc.pid!, 'SIGCONT');
    proc.kill('SIGKILL');
    await exited;
  }

  /** Restarts a killed member on its data dir (it rejoins and catches up from the leader). */
  restart(i: number): void {
    if (this.members[i]!.proc) throw new Error(`member ${i} is running`);
    this.#spawn(i);
  }

  /** Freezes member `i` (SIGSTOP): to its peers and clients it is partitioned away. */
  freeze(i: number): void {
    this.members[i]!.proc?.kill('SIGSTOP');
  }

  thaw(i: number): void {
    this.members[i]!.proc?.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) await this.kill(i);
    await rm(this.dir, { recursive: true, force: true });
  }
}
