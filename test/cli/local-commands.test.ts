import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CLI_SIMULATED_QUANTIS_SERIAL } from '../../src/cli/commands/local-commands.js';
import type { CavpReport } from '../../src/entropy/cavp.js';
import type { SourceListing, SourceTestReport } from '../../src/entropy/source-check.js';
import { repoRoot, runCli } from './run-cli.js';

/** The NIST CAVP DRBG response files (drbgtestvectors.zip, CAVS 14.3), kept outside the repo. */
const cavpDir = resolve(repoRoot, 'test/vectors/cavp-drbg-full');
const SIM_ID = `quantis-usb:${CLI_SIMULATED_QUANTIS_SERIAL}`;

/**
 * One genuine case — NIST CAVP HMAC_DRBG.rsp, [SHA-256], no prediction resistance, COUNT = 0 —
 * then the same case with the last ReturnedBits nibble changed, then a section no DRBG here
 * implements.
 */
const SHA256_COUNT0 = `[SHA-256]
[PredictionResistance = False]
[EntropyInputLen = 256]
[NonceLen = 128]
[PersonalizationStringLen = 0]
[AdditionalInputLen = 0]
[ReturnedBitsLen = 1024]

COUNT = 0
EntropyInput = 06032cd5eed33f39265f49ecb142c511da9aff2af71203bffaf34a9ca5bd9c0d
Nonce = 0e66f71edc43e42a45ad3c6fc6cdc4df
PersonalizationString = 
EntropyInputReseed = 01920a4e669ed3a85ae8a33b35a74ad7fb2a6bb4cf395ce00334a9c9a5a5d552
AdditionalInputReseed = 
AdditionalInput = 
AdditionalInput = 
ReturnedBits = 76fc79fe9b50beccc991a11b5635783a83536add03c157fb30645e611c2898bb2b1bc215000209208cd506cb28da2a51bdb03826aaf2bd2335d576d519160842e7158ad0949d1a9ec3e66ea1b1a064b005de914eac2e9d4f2d72a8616a80225422918250ff66a41bd2f864a6a38cc5b6499dc43f7f2bd09e1e0f8f5885935124
`;
const GOOD = `# HMAC_DRBG options: SHA-256\n\n${SHA256_COUNT0}`;
const WRONG = `${GOOD}\n${SHA256_COUNT0.replace(/5124$/m, '5125').replace('COUNT = 0', 'COUNT = 1')}`;
const UNSUPPORTED = `${GOOD}\n${SHA256_COUNT0.replace('[SHA-256]', '[SHA3-256]')}`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-cli-local-'));
  await writeFile(join(dir, 'good.rsp'), GOOD);
  await writeFile(join(dir, 'wrong.rsp'), WRONG);
  await writeFile(join(dir, 'unsupported.rsp'), UNSUPPORTED);
  await writeFile(join(dir, 'empty.rsp'), '# HMAC_DRBG options: SHA-256\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const lastLine = (s: string) => s.trimEnd().split('\n').at(-1);

describe('qkm selftest drbg', () => {
  describe(`NIST CAVP files in ${cavpDir}`, () => {
    it('passes every case of CTR_DRBG.rsp (all 8 sections incl. 3KeyTDEA)', async () => {
      const r = await runCli('selftest', 'drbg', '--vectors', join(cavpDir, 'CTR_DRBG.rsp'));
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(lastLine(r.stdout)).toBe('1920 passed, 0 failed');
      expect(r.stdout).toContain('[AES-256 use df] 240 passed, 0 failed');
    });

    it('passes every case of HMAC_DRBG.rsp, also as JSON and with --mechanism', async () => {
      const r = await runCli(
        '--json',
        'selftest',
        'drbg',
        '--vectors',
        join(cavpDir, 'HMAC_DRBG.rsp'),
        '--mechanism',
        'HMAC_DRBG',
      );
      expect(r.code).toBe(0);
      const report = JSON.parse(r.stdout) as CavpReport;
      expect(report).toMatchObject({ mechanism: 'HMAC_DRBG', passed: 1680, failed: 0, failures: [] });
      expect(report.sections.map((s) => s.name)).toEqual([
        'SHA-1',
        'SHA-224',
        'SHA-256',
        'SHA-384',
        'SHA-512',
        'SHA-512/224',
        'SHA-512/256',
      ]);
    });
  });

  it('passes a one-case file', async () => {
    const r = await runCli('selftest', 'drbg', '--vectors', join(dir, 'good.rsp'));
    expect(r.code).toBe(0);
    expect(lastLine(r.stdout)).toBe('1 passed, 0 failed');
  });

  it('fails (exit 1) on a wrong ReturnedBits and says where', async () => {
    const r = await runCli('selftest', 'drbg', '--vectors', join(dir, 'wrong.rsp'));
    expect(r.code).toBe(1);
    expect(lastLine(r.stdout)).toBe('1 passed, 1 failed');
    expect(r.stdout).toMatch(/FAIL \[SHA-256\].*ReturnedBits mismatch.*COUNT = 1/);
    expect(r.stderr).toBe('qkm: DRBG self-test failed: 1 case(s) failed\n');
  });

  it('fails (exit 1) on an unsupported section and lists it, in text and JSON', async () => {
    const r = await runCli('selftest', 'drbg', '--vectors', join(dir, 'unsupported.rsp'));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/\[SHA3-256\] UNSUPPORTED/);
    expect(lastLine(r.stdout)).toBe('1 passed, 1 failed');
    expect(r.stderr).toContain('unsupported section(s): SHA3-256');

    const j = await runCli('--json', 'selftest', 'drbg', '--vectors', join(dir, 'unsupported.rsp'));
    expect(j.code).toBe(1);
    const report = JSON.parse(j.stdout) as CavpReport;
    expect(report.sections.find((s) => s.name === 'SHA3-256')?.unsupported).toBeTruthy();
    expect(report).toMatchObject({ passed: 1, failed: 1 });
    expect(JSON.parse(j.stderr)).toEqual({
      error: 'SELFTEST_FAILED',
      message: 'DRBG self-test failed: 1 case(s) failed; unsupported section(s): SHA3-256',
    });
  });

  it('fails (exit 1) on a file with no test cases', async () => {
    const r = await runCli('selftest', 'drbg', '--vectors', join(dir, 'empty.rsp'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no test cases found');
  });

  it('reports a missing or unreadable file in one line, without a stack trace', async () => {
    const missing = await runCli('selftest', 'drbg', '--vectors', join(dir, 'nope.rsp'));
    expect(missing).toEqual({
      code: 1,
      stdout: '',
      stderr: `qkm: cannot read vectors file ${join(dir, 'nope.rsp')}: no such file\n`,
    });
    const directory = await runCli('selftest', 'drbg', '--vectors', dir);
    expect(directory.code).toBe(1);
    expect(directory.stderr).toBe(`qkm: cannot read vectors file ${dir}: is a directory\n`);
  });

  it('rejects an unknown --mechanism with exit 2', async () => {
    const r = await runCli('selftest', 'drbg', '--vectors', join(dir, 'good.rsp'), '--mechanism', 'DUAL_EC');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--mechanism must be CTR_DRBG, HMAC_DRBG or Hash_DRBG');
  });
});

describe('qkm sources', () => {
  it('lists the OS source and, only when asked, the simulated Quantis', async () => {
    vi.stubEnv('QKM_MODE', 'hardware');
    try {
      const plain = await runCli('--json', 'sources', 'list');
      expect(plain.code).toBe(0);
      const listing = JSON.parse(plain.stdout) as SourceListing;
      expect(listing.sources.map((s) => s.id)).toContain('os');
      expect(listing.sources.some((s) => s.simulated)).toBe(false);

      const sim = await runCli('--json', 'sources', 'list', '--simulated');
      const withSim = JSON.parse(sim.stdout) as SourceListing;
      expect(withSim.sources).toContainEqual(expect.objectContaining({ id: SIM_ID, simulated: true }));
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('adds the simulated Quantis when QKM_MODE=simulator, and lists configured serial paths', async () => {
    vi.stubEnv('QKM_MODE', 'simulator');
    vi.stubEnv('QKM_SERIAL_RNG', '/dev/qkm-test-no-such-tty:truerng');
    try {
      const r = await runCli('sources', 'list');
      expect(r.code).toBe(0);
      expect(r.stdout.split('\n')[0]).toMatch(/^ID\s+DRIVER\s+SIMULATED\s+DESCRIPTION$/);
      expect(r.stdout).toMatch(new RegExp(`^${SIM_ID}\\s+quantis-usb\\s+yes\\s+`, 'm'));
      expect(r.stdout).toMatch(/^serial-trng:\/dev\/qkm-test-no-such-tty\s+serial-trng\s+no\s+/m);
      expect(r.stdout).toMatch(/^os\s+os\s+no\s+/m);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('does not crash where udevadm is missing (empty PATH)', async () => {
    const emptyBin = await mkdtemp(join(tmpdir(), 'qkm-nopath-'));
    vi.stubEnv('PATH', emptyBin);
    try {
      const r = await runCli('--json', 'sources', 'list');
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as SourceListing).sources.map((s) => s.id)).toContain('os');
    } finally {
      vi.unstubAllEnvs();
      await rm(emptyBin, { recursive: true, force: true });
    }
  });

  it('tests the simulated Quantis: health tests pass, exit 0', async () => {
    const r = await runCli('--json', 'sources', 'test', SIM_ID, '--simulated', '--samples', '8192');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as SourceTestReport;
    expect(report).toMatchObject({
      id: SIM_ID,
      verdict: 'pass',
      bytesRead: 8192,
      startup: { passed: true },
      continuous: { passed: true },
      info: { kind: 'quantum', simulated: true },
    });
    expect(report.mcvEstimate).toBeGreaterThan(6);
  });

  it("tests at the α of this host's config (default 2⁻⁴⁰; 2⁻²⁰ when configured)", async () => {
    const cutoffs = async (...pre: string[]) => {
      const r = await runCli('--json', ...pre, 'sources', 'test', SIM_ID, '--simulated', '--samples', '4096');
      expect(r.code).toBe(0);
      return (JSON.parse(r.stdout) as SourceTestReport).continuous.rctCutoff;
    };
    const data = await mkdtemp(join(tmpdir(), 'qkm-cli-alpha-'));
    try {
      expect(await cutoffs('--data', data)).toBe(7); // H = 7.5 at α = 2⁻⁴⁰
      await writeFile(join(data, 'config.json'), JSON.stringify({ entropy: { healthAlphaLog2: 20 } }));
      expect(await cutoffs('--data', data)).toBe(4);
    } finally {
      await rm(data, { recursive: true, force: true });
    }
  });

  it('tests the OS source in human form', async () => {
    const r = await runCli('sources', 'test', 'os', '--samples', '4096');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^source os: /);
    expect(r.stdout).toContain('start-up test: pass');
    expect(lastLine(r.stdout)).toBe('verdict: PASS');
  });

  it('exits 1 with the failure when the device cannot be read', async () => {
    const id = 'serial-trng:/dev/qkm-test-no-such-tty';
    const r = await runCli('--json', 'sources', 'test', id);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as SourceTestReport;
    expect(report).toMatchObject({ id, verdict: 'fail', bytesRead: 0 });
    expect(report.error?.failure).toBeDefined();
    // --json: the report on stdout, the failure as {error, message} on stderr.
    expect(JSON.parse(r.stderr)).toEqual({
      error: 'SOURCE_TEST_FAILED',
      message: expect.stringMatching(new RegExp(`^source ${id} failed: `)),
    });
    const text = await runCli('sources', 'test', id);
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(new RegExp(`^qkm: source ${id} failed: `));
  });

  it('exits 1 for an unknown id or an absent device, 2 for a bad --samples', async () => {
    vi.stubEnv('QKM_MODE', 'hardware');
    try {
      const unknown = await runCli('sources', 'test', 'no-such-driver:x');
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toBe('qkm: no entropy source no-such-driver:x (see `qkm sources list`)\n');
      // A known family, absent device: the driver's own answer, still exit 1 and one line.
      const absent = await runCli('sources', 'test', SIM_ID);
      expect(absent.code).toBe(1);
      expect(absent.stderr).toMatch(new RegExp(`^qkm: source ${SIM_ID} failed: .+\\n$`));
    } finally {
      vi.unstubAllEnvs();
    }
    const bad = await runCli('sources', 'test', 'os', '--samples', '-5');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--samples must be a positive integer');
  });
});
