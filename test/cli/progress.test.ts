import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { progressOf } from '../../src/cli/progress.js';
import { runCli } from './run-cli.js';

/** Progress of long commands: on stderr only, on a terminal or with --progress, never with --quiet. */

function fakeStream(isTTY: boolean) {
  const chunks: string[] = [];
  const stream = { isTTY, write: (s: string) => chunks.push(s) > 0 } as unknown as NodeJS.WriteStream;
  return { stream, chunks };
}

describe('progressOf', () => {
  it('on a terminal: rewrites one line in place, throttles ticks, clears the line when done', () => {
    let t = 0;
    const { stream, chunks } = fakeStream(true);
    const p = progressOf({}, stream, () => t);
    p.step('a');
    p.tick('b'); // the first tick of a step is written
    t = 50;
    p.tick('c'); // within 100 ms of 'b': dropped
    t = 150;
    p.tick('d');
    p.done();
    expect(chunks).toEqual(['\r\x1b[Ka', '\r\x1b[Kb', '\r\x1b[Kd', '\r\x1b[K']);
  });

  it('not a terminal: silent, unless --progress (one line per update, ticks once a second)', () => {
    const silent = fakeStream(false);
    progressOf({}, silent.stream).step('a');
    expect(silent.chunks).toEqual([]);
    let t = 0;
    const forced = fakeStream(false);
    const p = progressOf({ progress: true }, forced.stream, () => t);
    p.step('a');
    p.tick('b');
    t = 500;
    p.tick('c');
    t = 1500;
    p.tick('d');
    p.done();
    expect(forced.chunks).toEqual(['a\n', 'b\n', 'd\n']);
  });

  it('--quiet wins over --progress and a terminal; --json makes updates JSON lines', () => {
    const quiet = fakeStream(true);
    progressOf({ quiet: true, progress: true }, quiet.stream).step('a');
    expect(quiet.chunks).toEqual([]);
    const jsonTty = fakeStream(true);
    progressOf({ json: true }, jsonTty.stream).step('a');
    expect(jsonTty.chunks).toEqual([]);
    const json = fakeStream(false);
    progressOf({ json: true, progress: true }, json.stream).step('a');
    expect(json.chunks).toEqual(['{"progress":"a"}\n']);
  });
});

describe('long commands report progress on stderr, stdout unchanged', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qkm-cli-progress-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('sources test', async () => {
    const quiet = await runCli('sources', 'test', 'os', '--samples', '4096');
    expect(quiet.stderr).toBe(''); // stderr is not a terminal here
    const r = await runCli('--progress', 'sources', 'test', 'os', '--samples', '4096');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^source os: /);
    expect(r.stdout).toMatch(/verdict: PASS\n$/);
    expect(r.stdout).not.toContain('sources test:');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe('sources test: opening os');
    expect(lines[1]).toMatch(/^sources test: os: \d+\/4096 bytes read and tested$/);
    const json = await runCli('--json', '--progress', 'sources', 'test', 'os', '--samples', '4096');
    expect(JSON.parse(json.stdout)).toMatchObject({ id: 'os', verdict: 'pass' });
    expect(JSON.parse(json.stderr.split('\n')[0]!)).toEqual({ progress: 'sources test: opening os' });
  });

  it('selftest drbg: one line per section', async () => {
    const section = (name: string) => `[${name}]
[PredictionResistance = False]
[EntropyInputLen = 256]
[NonceLen = 128]
[PersonalizationStringLen = 0]
[AdditionalInputLen = 0]
[ReturnedBitsLen = 1024]
`;
    // Sections without cases: the progress lines are what is checked, not the verdict.
    const file = join(dir, 'two.rsp');
    await writeFile(file, `# HMAC_DRBG options: SHA-256\n\n${section('SHA-256')}\n${section('SHA-512')}`);
    const r = await runCli('--progress', 'selftest', 'drbg', '--vectors', file);
    expect(r.stderr.split('\n').slice(0, 2)).toEqual([
      'selftest: [SHA-256] (0/0 cases done)',
      'selftest: [SHA-512] (0/0 cases done)',
    ]);
    const q = await runCli('--progress', '--quiet', 'selftest', 'drbg', '--vectors', file);
    expect(q.stderr).toBe('qkm: DRBG self-test failed: no test cases found\n');
  });
});
