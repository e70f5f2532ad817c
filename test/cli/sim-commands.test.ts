import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPngConverter } from '../../src/cli/commands/sim-commands.js';
import { bb84Report, bb84Sweep, formatSweepTable, renderSweepSvg } from '../../simulators/bb84/index.js';
import { generateSimCerts, type SimCertFiles } from '../../simulators/kme/certs.js';
import type { KmePairDescription } from '../../simulators/kme/pair.js';
import { call, identity } from '../simulators/kme-test-client.js';
import { repoRoot, runCli } from './run-cli.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-cli-sim-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('qkm sim bb84 --distance', () => {
  it('prints the model report as JSON', async () => {
    const r = await runCli('--json', 'sim', 'bb84', '--distance', '50');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(JSON.stringify(bb84Report({ distanceKm: 50 }))));
  });

  it('prints rate, bits/s, QBER, μ, ν, max distance, PLOB and latency for people', async () => {
    const r = await runCli('sim', 'bb84', '--distance', '50', '--scheme', 'infinite', '--mu', '0.5');
    expect(r.code).toBe(0);
    const rep = bb84Report({ distanceKm: 50, scheme: 'infinite', mu: 0.5 });
    expect(r.stdout).toContain('BB84, infinite decoy, 50 km of fibre');
    expect(r.stdout).toContain(`${rep.ratePerPulse.toExponential(3)} bits/pulse`);
    expect(r.stdout).toMatch(/key rate .* = [\d.]+ (k)?bit\/s/);
    expect(r.stdout).toContain(`QBER                 ${(rep.qber * 100).toFixed(2)}%`);
    expect(r.stdout).toContain('0.5000 (pinned)');
    expect(r.stdout).toContain('not used by this scheme');
    expect(r.stdout).toContain(`max distance         ${rep.maxDistanceKm.toFixed(1)} km`);
    expect(r.stdout).toContain(`PLOB bound           ${rep.plobPerPulse.toExponential(3)} bits/pulse`);
    expect(r.stdout).toMatch(/latency +first 1024-bit block after [\d.]+ m?s/);
  });

  it('says when there is no secure key', async () => {
    const r = await runCli('sim', 'bb84', '--distance', '200', '--scheme', 'none');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('key rate             0 bits/pulse = 0 bit/s');
    expect(r.stdout).toContain('(no secure key)');
    expect(r.stdout).toContain('first 1024-bit block after never');
  });

  it.each([
    [['--distance', '-1'], '--distance must be ≥ 0'],
    [['--distance', 'ten'], '--distance must be a number'],
    [['--distance', 'Infinity'], '--distance must be a number'],
    [['--distance', '10', '--scheme', 'bogus'], '--scheme must be one of infinite, vacuum-weak, none'],
    [['--distance', '10', '--mu', '0.1', '--nu', '0.3'], 'nu must be smaller than mu'],
    [['--distance', '10', '--mu', '-1'], 'mu'],
    [[], 'give exactly one of --distance <km> or --sweep from:to:step'],
    [['--distance', '10', '--sweep', '0:10:1'], 'give exactly one of'],
    [['--distance', '10', '--svg', 'x.svg'], '--svg and --png need --sweep'],
    [['--sweep', '0:10'], '--sweep must be from:to:step'],
    [['--sweep', '0:10:0'], '--sweep: step must be > 0'],
    [['--sweep', '10:0:1'], '--sweep: to must be ≥ from'],
    [['--sweep', '-5:10:1'], '--sweep: from must be ≥ 0'],
    [['--sweep', '0:100000:1'], 'more than 10000 rows'],
  ])('rejects %j with exit 2', async (args, message) => {
    const r = await runCli('sim', 'bb84', ...args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(message);
  });
});

describe('qkm sim bb84 --sweep', () => {
  it('prints the sweep table and writes the SVG chart', async () => {
    const svg = join(dir, 'sweep.svg');
    const r = await runCli('sim', 'bb84', '--sweep', '0:150:5', '--svg', svg);
    expect(r.code).toBe(0);
    const rows = bb84Sweep({ from: 0, to: 150, step: 5 });
    expect(rows).toHaveLength(31);
    expect(r.stdout).toBe(formatSweepTable(rows));
    expect(await readFile(svg, 'utf8')).toBe(renderSweepSvg(rows));
    expect(r.stderr).toBe(`wrote ${svg}\n`);
  });

  it('sweeps one scheme as JSON', async () => {
    const r = await runCli('--json', 'sim', 'bb84', '--sweep', '0:100:50', '--scheme', 'none');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { rows: unknown; files: unknown };
    expect(out).toEqual({
      rows: JSON.parse(JSON.stringify(bb84Sweep({ from: 0, to: 100, step: 50, scheme: 'none' }))),
      files: {},
    });
  });

  it('writes a PNG when a real converter exists, otherwise says to use --svg', async () => {
    const png = join(dir, 'sweep.png');
    const converter = await findPngConverter();
    const r = await runCli('sim', 'bb84', '--sweep', '0:20:10', '--png', png);
    if (converter === undefined) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^qkm: no SVG-to-PNG converter found .*use --svg <file> instead\n$/);
      expect(existsSync(png)).toBe(false);
    } else {
      expect(r.code).toBe(0);
      const bytes = await readFile(png);
      expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    }
  });

  it('keeps simulators/bb84/keyrate.svg in step with the model', async () => {
    // Regenerate with: node --import tsx src/cli/bin.ts sim bb84 --sweep 0:160:2 --svg simulators/bb84/keyrate.svg
    const committed = await readFile(join(repoRoot, 'simulators/bb84/keyrate.svg'), 'utf8');
    expect(committed).toBe(renderSweepSvg(bb84Sweep({ from: 0, to: 160, step: 2 })));
    for (const series of ['infinite', 'vacuum-weak', 'none', 'plob'])
      expect(committed).toContain(`data-series="${series}"`);
  });
});

describe('qkm sim certs', () => {
  it('writes the CA, KME and SAE certificates and lists them', async () => {
    const out = join(dir, 'certs-json');
    const r = await runCli('--json', 'sim', 'certs', '--out', out);
    expect(r.code).toBe(0);
    const files = JSON.parse(r.stdout) as SimCertFiles;
    expect(files.dir).toBe(out);
    expect(Object.keys(files.kmes).sort()).toEqual(['kme-a', 'kme-b']);
    expect(Object.keys(files.saes).sort()).toEqual(['sae-a', 'sae-b']);
    for (const f of [files.ca, ...Object.values(files.kmes), ...Object.values(files.saes)]) {
      expect((await readFile(f.cert, 'utf8')).startsWith('-----BEGIN CERTIFICATE-----')).toBe(true);
      expect(await readFile(f.key, 'utf8')).toContain('PRIVATE KEY-----');
    }

    const human = await runCli('sim', 'certs', '--out', join(dir, 'certs-text'));
    expect(human.code).toBe(0);
    expect(human.stdout.split('\n')[0]).toBe(`wrote to ${join(dir, 'certs-text')}:`);
    expect(human.stdout).toContain(`  ${join(dir, 'certs-text', 'sae-b.key')}\n`);
  });
});

describe('qkm sim kme (child process)', () => {
  let certs: string;
  beforeAll(async () => {
    certs = join(dir, 'kme-certs');
    await generateSimCerts(certs);
  });

  it('fails in one line when the certificates are missing', async () => {
    const r = await runCli('sim', 'kme', '--certs', join(dir, 'no-certs'), '--port-a', '0', '--port-b', '0');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^qkm: certificates missing in .*run `qkm sim certs --out .*` first\n$/);
  });

  it('rejects a bad port with exit 2', async () => {
    const r = await runCli('sim', 'kme', '--certs', certs, '--port-a', '70000');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--port-a must be a port number');
  });

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'serves ETSI 014 with the generated certificates and exits 0 on %s',
    async (stopSignal) => {
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          'src/cli/bin.ts',
          'sim',
          'kme',
          '--certs',
          certs,
          '--port-a',
          '0',
          '--port-b',
          '0',
        ],
        { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
        child.once('exit', (code, signal) => done({ code, signal })),
      );
      try {
        const firstLine = await new Promise<string>((done, fail) => {
          const rl = createInterface({ input: child.stdout });
          rl.once('line', (line) => {
            rl.close();
            done(line);
          });
          exited.then(({ code }) => fail(new Error(`sim kme exited (${code}) before printing: ${stderr}`)));
        });
        const description = JSON.parse(firstLine) as KmePairDescription;
        const [a, b] = description.kmes;
        expect(a).toMatchObject({ id: 'kme-a', saes: ['sae-a'], role: 'primary' });
        expect(b).toMatchObject({ id: 'kme-b', saes: ['sae-b'] });
        expect(a!.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
        expect(a!.url).not.toBe('https://127.0.0.1:0');
        expect(description.link.distance_km).toBe(25);

        const status = await call(a!.url, identity(certs, 'sae-a'), '/api/v1/keys/sae-b/status');
        expect(status.status).toBe(200);
        expect(status.json).toMatchObject({
          source_KME_ID: 'kme-a',
          target_KME_ID: 'kme-b',
          master_SAE_ID: 'sae-a',
          slave_SAE_ID: 'sae-b',
          key_size: 256,
        });

        const t0 = Date.now();
        child.kill(stopSignal);
        const { code, signal } = await Promise.race([
          exited,
          new Promise<never>((_, fail) =>
            setTimeout(() => fail(new Error(`no exit 5 s after ${stopSignal}`)), 5000).unref(),
          ),
        ]);
        expect({ code, signal }).toEqual({ code: 0, signal: null });
        expect(Date.now() - t0).toBeLessThan(3000);
        // stderr is a separate pipe: only complete once the child has gone.
        expect(stderr).toContain(`${a!.url} (sae-a)`);
        expect(stderr).toContain('Ctrl-C to stop');
        expect(stderr).toContain(`${stopSignal}, stopping`);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    },
  );
});
