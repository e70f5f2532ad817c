/**
 * The typed SDK as a consumer gets it: the real build (`tsconfig.build.json`, as `npm run
 * build`) is written into a scratch `node_modules/qkm` next to this repo's package.json, and a
 * consumer project (test/fixtures/sdk-consumer) that does `import … from 'qkm/client'` is
 * type-checked with tsc against it — through package.json "exports" and the emitted .d.ts,
 * not through this repo's sources.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../cli/run-cli.js';

const run = promisify(execFile);
const tsc = join(repoRoot, 'node_modules', '.bin', 'tsc');

let dir: string;
let pkgDir: string;

/** Runs tsc; its exit code and output (tsc reports errors on stdout). */
async function typecheck(project: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run(tsc, ['-p', project], { cwd: dir });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qkm-sdk-'));
  pkgDir = join(dir, 'node_modules', 'qkm');
  await mkdir(pkgDir, { recursive: true });
  await cp(join(repoRoot, 'package.json'), join(pkgDir, 'package.json'));
  // The package's own dependencies (typebox, noble, …) as an install would provide them.
  await symlink(join(repoRoot, 'node_modules'), join(pkgDir, 'node_modules'), 'dir');
  await symlink(join(repoRoot, 'node_modules', '@types'), join(dir, 'node_modules', '@types'), 'dir');
  const build = await run(
    tsc,
    ['-p', join(repoRoot, 'tsconfig.build.json'), '--outDir', join(pkgDir, 'dist')],
    {
      cwd: repoRoot,
    },
  );
  expect(build.stdout).toBe('');
  await writeFile(join(dir, 'package.json'), '{"type":"module","private":true}\n');
  for (const f of ['consumer.ts', 'tsconfig.json']) {
    await cp(join(repoRoot, 'test', 'fixtures', 'sdk-consumer', f), join(dir, f));
  }
}, 120_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('qkm/client for a TypeScript consumer', () => {
  it('package.json exports name the declarations next to the code', async () => {
    const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8'));
    expect(pkg.exports['./client']).toEqual({
      types: './dist/src/client/index.d.ts',
      default: './dist/src/client/index.js',
    });
    expect(pkg.exports['.'].types).toBe('./dist/src/index.d.ts');
    for (const entry of [pkg.exports['./client'].types, pkg.exports['.'].types]) {
      const text = await readFile(join(pkgDir, entry), 'utf8');
      expect(text.length).toBeGreaterThan(0);
    }
  });

  it('a consumer file type-checks against the built package; misuse is caught, nothing is any', async () => {
    const r = await typecheck(join(dir, 'tsconfig.json'));
    expect(r.out).toBe('');
    expect(r.code).toBe(0);
  }, 60_000);

  it('the check has teeth: a wrong use of a wire type fails it', async () => {
    const bad = `import type { Provenance } from 'qkm/client';\nexport const p: Provenance = { degraded: 'no' };\n`;
    await writeFile(join(dir, 'bad.ts'), bad);
    await writeFile(
      join(dir, 'tsconfig.bad.json'),
      JSON.stringify({ extends: './tsconfig.json', files: ['bad.ts'] }),
    );
    const r = await typecheck(join(dir, 'tsconfig.bad.json'));
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/bad\.ts.*error TS2322/s);
  }, 60_000);
});
