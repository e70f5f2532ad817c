/**
 * CAVP runner and the DRBG known answers.
 *
 * - The full CTR_DRBG.rsp and HMAC_DRBG.rsp (NIST CAVP drbgtestvectors.zip, drbgvectors_pr_false,
 *   CAVS 14.3, unmodified) in test/vectors/cavp-drbg-full/: every section must pass.
 * - Excerpts of the other published layouts (no reseed, prediction resistance) and of
 *   Hash_DRBG in test/vectors/cavp-drbg/ (each file names its source).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type CavpReport, detectCavpMechanism, formatCavpReport, runCavp } from '../../src/entropy/cavp.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const excerptDir = path.resolve(repoRoot, 'test/vectors/cavp-drbg');
const fullDir = path.resolve(repoRoot, 'test/vectors/cavp-drbg-full');

function readFull(file: string): string {
  return readFileSync(path.join(fullDir, file), 'utf8');
}

function expectAllPassed(report: CavpReport): void {
  // Print the report's own lines on failure, so a broken section is named.
  expect({ failed: report.failed, failures: report.failures }, formatCavpReport(report).join('\n')).toEqual({
    failed: 0,
    failures: [],
  });
  expect(report.passed).toBeGreaterThan(0);
  for (const s of report.sections) {
    expect(s.unsupported).toBeUndefined();
    expect(s.passed).toBeGreaterThan(0);
  }
}

describe('NIST CAVP DRBG vectors (test/vectors/cavp-drbg-full)', () => {
  it('CTR_DRBG.rsp: all 8 sections (AES-128/192/256 and 3KeyTDEA, use df and no df) pass', () => {
    const report = runCavp(readFull('CTR_DRBG.rsp'));
    expect(report.mechanism).toBe('CTR_DRBG');
    expectAllPassed(report);
    expect(report.sections.map((s) => s.name).sort()).toEqual(
      [
        '3KeyTDEA no df',
        '3KeyTDEA use df',
        'AES-128 no df',
        'AES-128 use df',
        'AES-192 no df',
        'AES-192 use df',
        'AES-256 no df',
        'AES-256 use df',
      ].sort(),
    );
    expect(report.passed).toBe(1920);
    expect(formatCavpReport(report).at(-1)).toBe('1920 passed, 0 failed');
  });

  it('HMAC_DRBG.rsp: all 7 sections (SHA-1 … SHA-512/256) pass', () => {
    const report = runCavp(readFull('HMAC_DRBG.rsp'));
    expect(report.mechanism).toBe('HMAC_DRBG');
    expectAllPassed(report);
    expect(report.sections.map((s) => s.name)).toEqual([
      'SHA-1',
      'SHA-224',
      'SHA-256',
      'SHA-384',
      'SHA-512',
      'SHA-512/224',
      'SHA-512/256',
    ]);
    expect(report.passed).toBe(1680);
  });
});

describe('CAVP excerpts for the other layouts and Hash_DRBG (test/vectors/cavp-drbg)', () => {
  const files = readdirSync(excerptDir).flatMap((layout) =>
    readdirSync(path.join(excerptDir, layout)).map((f) => `${layout}/${f}`),
  );

  it('cover every mechanism in every layout', () => {
    for (const layout of ['no_reseed', 'pr_true']) {
      for (const m of ['CTR_DRBG', 'HMAC_DRBG', 'Hash_DRBG']) expect(files).toContain(`${layout}/${m}.rsp`);
    }
    expect(files).toContain('pr_false/Hash_DRBG.rsp');
  });

  it.each(files)('%s passes', (file) => {
    const text = readFileSync(path.join(excerptDir, file), 'utf8');
    expect(text).toMatch(/drbgtestvectors\.zip/);
    const report = runCavp(text);
    expect(report.mechanism).toBe(path.basename(file, '.rsp'));
    expectAllPassed(report);
  });
});

/** A two-case PR=True HMAC file, the smallest known-answer input for runner tests. */
const prHmac = (): string => readFileSync(path.join(excerptDir, 'pr_true/HMAC_DRBG.rsp'), 'utf8');

describe('runCavp', () => {
  it('detects the mechanism from the header, or takes it from the caller', () => {
    expect(detectCavpMechanism('# CAVS 14.3\n# Hash_DRBG options: SHA-1 :: SHA-256\n[SHA-1]\n')).toBe(
      'Hash_DRBG',
    );
    expect(detectCavpMechanism('# CTR_DRBG options: AES-128 use df\n')).toBe('CTR_DRBG');
    expect(detectCavpMechanism('# DRBG800-90A information for "HMAC_DRBG"\n')).toBe('HMAC_DRBG');
    expect(detectCavpMechanism('# DRBG800-90A information for "drbg_pr"\n[SHA-1]\n')).toBeUndefined();
    const noHeader = prHmac().replace(/^# HMAC_DRBG options.*$/m, '');
    expect(runCavp(noHeader, { mechanism: 'HMAC_DRBG' }).passed).toBe(2);
  });

  it('reports hash sections without a known mechanism as unsupported, counted as failed', () => {
    const noHeader = prHmac().replace(/^# HMAC_DRBG options.*$/m, '');
    const report = runCavp(noHeader);
    expect(report).toMatchObject({ mechanism: 'unknown', passed: 0, failed: 2 });
    expect(report.sections[0]?.unsupported).toMatch(/HMAC_DRBG or Hash_DRBG/);
    expect(report.failures).toEqual([
      { section: 'SHA-384', count: 2, reason: expect.stringMatching(/^unsupported/) },
    ]);
    const lines = formatCavpReport(report);
    expect(lines.some((l) => l.includes('[SHA-384] UNSUPPORTED'))).toBe(true);
    expect(lines.at(-1)).toBe('0 passed, 2 failed');
  });

  it('lists a section it cannot run next to the ones it can', () => {
    const text = `${prHmac()}\n[SHA3-256]\n[PredictionResistance = False]\n\nCOUNT = 0\nEntropyInput = 00\nNonce = 00\nReturnedBits = 00\n`;
    const report = runCavp(text);
    expect(report.passed).toBe(2);
    expect(report.failed).toBe(1);
    expect(report.sections.map((s) => [s.name, s.unsupported !== undefined])).toEqual([
      ['SHA-384', false],
      ['SHA3-256', true],
    ]);
  });

  it('counts a wrong answer as a failure and names the case without dumping the whole value', () => {
    const text = prHmac();
    const expected = /ReturnedBits = ([0-9a-f]+)/.exec(text)?.[1] as string;
    const flipped = `${expected.slice(0, -1)}${expected.endsWith('0') ? '1' : '0'}`;
    const report = runCavp(text.replace(expected, flipped));
    expect(report).toMatchObject({ passed: 1, failed: 1 });
    expect(report.failures).toHaveLength(1);
    const reason = report.failures[0]?.reason as string;
    expect(reason).toMatch(
      /^ReturnedBits mismatch: expected [0-9a-f]{16}…, got [0-9a-f]{16}…; first at COUNT = 0/,
    );
    expect(reason).not.toContain(expected);
    expect(formatCavpReport(report).at(-1)).toBe('1 passed, 1 failed');
  });

  it('reports malformed cases and DRBG errors as failures, not exceptions', () => {
    const missing = prHmac().replace(/^EntropyInput = .*$/m, '');
    expect(runCavp(missing).failures[0]?.reason).toMatch(/malformed test case: missing EntropyInput/);
    const short = prHmac().replace(/^(EntropyInput = )([0-9a-f]{2})[0-9a-f]+$/m, '$1$2');
    expect(runCavp(short).failures[0]?.reason).toMatch(/RangeError: .*entropyInput is 1 bytes/);
    const noPrInputs = prHmac().replace(/^EntropyInputPR = .*$/gm, '');
    expect(runCavp(noPrInputs).failures[0]?.reason).toMatch(
      /PredictionResistance = True but no EntropyInputPR/,
    );
    const badHex = prHmac().replace(/^(Nonce = )[0-9a-f]+$/m, '$1zz');
    expect(runCavp(badHex).failures[0]?.reason).toMatch(/Nonce is not hex/);
  });

  it('runs the three layouts in the order the spec prescribes', () => {
    // Swapping the two EntropyInputPR values must break a PR=True answer, and dropping the
    // reseed lines must break a reseed answer: the runner really uses those inputs.
    const pr = prHmac();
    const swapped = pr.replace(
      /EntropyInputPR = ([0-9a-f]+)\nAdditionalInput = \nEntropyInputPR = ([0-9a-f]+)/,
      'EntropyInputPR = $2\nAdditionalInput = \nEntropyInputPR = $1',
    );
    expect(swapped).not.toBe(pr);
    expect(runCavp(swapped).failed).toBe(1);
    const reseed = readFileSync(path.join(excerptDir, 'pr_false/Hash_DRBG.rsp'), 'utf8');
    expect(runCavp(reseed).passed).toBe(3);
    expect(runCavp(reseed.replace(/^EntropyInputReseed = .*$/gm, '')).passed).toBe(0);
  });

  it('returns an empty report for a file without test cases', () => {
    const report = runCavp('# nothing here\n');
    expect(report).toEqual({ mechanism: 'unknown', passed: 0, failed: 0, sections: [], failures: [] });
    expect(formatCavpReport(report).at(-1)).toBe('0 passed, 0 failed');
  });
});
