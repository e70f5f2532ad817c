/**
 * NIST CAVP DRBG response-file (.rsp) runner: parses a DRBGVS response file and runs every test
 * case through the matching SP 800-90A DRBG.
 *
 * The three published layouts are recognised per test case:
 * - reseed, no prediction resistance (`EntropyInputReseed` present): instantiate, reseed,
 *   generate, generate; compare the second output;
 * - no reseed (neither `EntropyInputReseed` nor `EntropyInputPR`): instantiate, generate,
 *   generate; compare the second;
 * - prediction resistance (`EntropyInputPR` present): instantiate, then twice
 *   generateWithReseed(EntropyInputPR[i], AdditionalInput[i]); compare the second.
 */
import {
  createDrbgFromSpec,
  type DrbgMechanism,
  type DrbgSpec,
  parseDrbgName,
  parseMechanism,
} from './drbg/index.js';
import type { Drbg } from './drbg/interface.js';

export type CavpMechanism = DrbgMechanism;

export interface CavpSectionResult {
  /** The section name as written in the file, e.g. `AES-256 use df`, `SHA-256`. */
  name: string;
  passed: number;
  failed: number;
  /** Set when the section could not be run at all; its cases are counted as failed. */
  unsupported?: string;
}

export interface CavpFailure {
  section: string;
  /** How many test cases failed this way. */
  count: number;
  reason: string;
}

export interface CavpReport {
  mechanism: string;
  passed: number;
  failed: number;
  sections: CavpSectionResult[];
  failures: CavpFailure[];
}

export interface CavpOptions {
  mechanism?: CavpMechanism;
  /** Called before each group's cases run (the CLI's progress line); cases done so far of all. */
  onGroup?: (group: { name: string; casesDone: number; casesTotal: number }) => void;
}

/** One COUNT block: field name → values in file order (AdditionalInput and EntropyInputPR repeat). */
interface TestCase {
  count: string;
  params: ReadonlyMap<string, string>;
  fields: Map<string, string[]>;
  line: number;
}

interface Group {
  name: string;
  params: Map<string, string>;
  cases: TestCase[];
}

/** Finds the mechanism in the header comments (`# CTR_DRBG options: …`). */
export function detectCavpMechanism(text: string): CavpMechanism | undefined {
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('[')) break;
    if (!line.startsWith('#')) continue;
    const options = /#\s*(CTR_DRBG|HMAC_DRBG|Hash_DRBG)\s+options/i.exec(line);
    if (options !== null) return parseMechanism(options[1] as string);
    const info = /DRBG800-90A information for\s+"?([A-Za-z_]+)/i.exec(line);
    const m = info === null ? undefined : parseMechanism(info[1] as string);
    if (m !== undefined) return m;
  }
  return undefined;
}

function parseGroups(text: string): Group[] {
  const groups: Group[] = [];
  let group: Group | undefined;
  let current: TestCase | undefined;
  let inHeader = false;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '' || line.startsWith('#')) continue;
    const bracket = /^\[(.*)\]$/.exec(line);
    if (bracket !== null) {
      const body = (bracket[1] as string).trim();
      const eq = body.indexOf('=');
      if (eq < 0 || !inHeader || group === undefined) {
        if (eq < 0) {
          group = { name: body, params: new Map(), cases: [] };
        } else {
          // A parameter block without a preceding name keeps the previous name.
          group = { name: group?.name ?? '', params: new Map(), cases: [] };
          group.params.set(body.slice(0, eq).trim(), body.slice(eq + 1).trim());
        }
        groups.push(group);
        inHeader = true;
      } else {
        group.params.set(body.slice(0, eq).trim(), body.slice(eq + 1).trim());
      }
      current = undefined;
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (group === undefined) continue;
    inHeader = false;
    if (key === 'COUNT') {
      current = { count: value, params: group.params, fields: new Map(), line: i + 1 };
      group.cases.push(current);
      continue;
    }
    if (current === undefined) continue;
    const list = current.fields.get(key);
    if (list === undefined) current.fields.set(key, [value]);
    else list.push(value);
  }
  return groups;
}

class CaseError extends Error {}

function hex(field: string, value: string | undefined): Uint8Array {
  const v = value ?? '';
  if (v.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(v)) throw new CaseError(`${field} is not hex`);
  return Buffer.from(v, 'hex');
}

function field(tc: TestCase, name: string, index = 0): Uint8Array {
  const values = tc.fields.get(name);
  if (values === undefined || values.length <= index) {
    throw new CaseError(`missing ${name}${index > 0 ? ` #${index + 1}` : ''}`);
  }
  return hex(name, values[index]);
}

function optionalField(tc: TestCase, name: string, index = 0): Uint8Array {
  const values = tc.fields.get(name);
  return values === undefined || values.length <= index ? new Uint8Array(0) : hex(name, values[index]);
}

/** Short hex preview; test vectors are public, but a full 2048-bit dump helps nobody. */
function preview(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return h.length > 16 ? `${h.slice(0, 16)}…` : h;
}

/** Runs one test case; returns undefined on pass, the failure reason otherwise. */
function runCase(drbg: Drbg, tc: TestCase): { kind: string; detail: string } | undefined {
  try {
    const expected = field(tc, 'ReturnedBits');
    const bitsLen = tc.params.get('ReturnedBitsLen');
    if (bitsLen !== undefined && Number(bitsLen) !== expected.length * 8) {
      throw new CaseError(`ReturnedBits is ${expected.length * 8} bits, header says ${bitsLen}`);
    }
    const n = expected.length;
    const prHeader = tc.params.get('PredictionResistance')?.toLowerCase();
    if (prHeader === 'true' && !tc.fields.has('EntropyInputPR')) {
      throw new CaseError('PredictionResistance = True but no EntropyInputPR');
    }
    drbg.instantiate(
      field(tc, 'EntropyInput'),
      optionalField(tc, 'Nonce'),
      optionalField(tc, 'PersonalizationString'),
    );
    let out: Uint8Array;
    if (tc.fields.has('EntropyInputPR')) {
      drbg.generateWithReseed(n, field(tc, 'EntropyInputPR', 0), optionalField(tc, 'AdditionalInput', 0));
      out = drbg.generateWithReseed(
        n,
        field(tc, 'EntropyInputPR', 1),
        optionalField(tc, 'AdditionalInput', 1),
      );
    } else {
      if (tc.fields.has('EntropyInputReseed')) {
        drbg.reseed(field(tc, 'EntropyInputReseed'), optionalField(tc, 'AdditionalInputReseed'));
      }
      drbg.generate(n, optionalField(tc, 'AdditionalInput', 0));
      out = drbg.generate(n, optionalField(tc, 'AdditionalInput', 1));
    }
    drbg.uninstantiate();
    if (Buffer.compare(Buffer.from(out), Buffer.from(expected)) === 0) return undefined;
    return {
      kind: 'ReturnedBits mismatch',
      detail: `expected ${preview(expected)}, got ${preview(out)}`,
    };
  } catch (err) {
    if (drbg.instantiated) drbg.uninstantiate();
    const e = err as Error;
    return { kind: err instanceof CaseError ? 'malformed test case' : e.name, detail: e.message };
  }
}

/** Adds `n` failures of one kind to the report, merging with an earlier entry of the same kind. */
function addFailure(
  failures: CavpFailure[],
  index: Map<string, CavpFailure>,
  section: string,
  kind: string,
  reason: string,
  n = 1,
): void {
  const key = `${section}\u0000${kind}`;
  const prev = index.get(key);
  if (prev !== undefined) {
    prev.count += n;
    return;
  }
  const f: CavpFailure = { section, count: n, reason };
  index.set(key, f);
  failures.push(f);
}

/**
 * Parses a CAVP DRBG .rsp file and runs every test case. The mechanism comes from
 * `opts.mechanism` or the file header; without either, CTR_DRBG sections still run (their names
 * are unambiguous) and hash-named sections are reported unsupported.
 */
export function runCavp(text: string, opts: CavpOptions = {}): CavpReport {
  const mechanism = opts.mechanism ?? detectCavpMechanism(text);
  const groups = parseGroups(text);
  const sections: CavpSectionResult[] = [];
  const byName = new Map<string, CavpSectionResult>();
  const failures: CavpFailure[] = [];
  const failureIndex = new Map<string, CavpFailure>();
  const casesTotal = groups.reduce((n, g) => n + g.cases.length, 0);
  let casesDone = 0;

  for (const group of groups) {
    opts.onGroup?.({ name: group.name, casesDone, casesTotal });
    casesDone += group.cases.length;
    let section = byName.get(group.name);
    if (section === undefined) {
      section = { name: group.name, passed: 0, failed: 0 };
      byName.set(group.name, section);
      sections.push(section);
    }
    let spec: DrbgSpec;
    try {
      spec = parseDrbgName(group.name, mechanism);
    } catch (err) {
      section.failed += group.cases.length;
      section.unsupported ??= (err as Error).message;
      addFailure(
        failures,
        failureIndex,
        group.name,
        'unsupported',
        `unsupported: ${section.unsupported}`,
        group.cases.length,
      );
      continue;
    }
    for (const tc of group.cases) {
      const result = runCase(createDrbgFromSpec(spec), tc);
      if (result === undefined) {
        section.passed += 1;
        continue;
      }
      section.failed += 1;
      const where = `first at COUNT = ${tc.count} (line ${tc.line})`;
      addFailure(
        failures,
        failureIndex,
        group.name,
        result.kind,
        `${result.kind}: ${result.detail}; ${where}`,
      );
    }
  }

  const passed = sections.reduce((s, x) => s + x.passed, 0);
  const failed = sections.reduce((s, x) => s + x.failed, 0);
  return { mechanism: mechanism ?? 'unknown', passed, failed, sections, failures };
}

/** Human-readable report; the last line is exactly `N passed, M failed`. */
export function formatCavpReport(report: CavpReport): string[] {
  const lines = [`CAVP ${report.mechanism}: ${report.sections.length} section(s)`];
  for (const s of report.sections) {
    lines.push(
      s.unsupported === undefined
        ? `  [${s.name}] ${s.passed} passed, ${s.failed} failed`
        : `  [${s.name}] UNSUPPORTED (${s.failed} case(s) not run): ${s.unsupported}`,
    );
  }
  for (const f of report.failures) {
    lines.push(`  FAIL [${f.section}] ×${f.count}: ${f.reason}`);
  }
  lines.push(`${report.passed} passed, ${report.failed} failed`);
  return lines;
}
