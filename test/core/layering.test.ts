import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ROOT,
  importsOf,
  reachableFrom,
  specifiersOf,
  stripComments,
  tsFilesUnder,
} from '../helpers/imports.js';

/**
 * Layering rules that the type checker cannot see (issue #15, Structure): `src/core` is the
 * ground floor, so everything else may build on it and it builds on nothing else of qkm; the
 * library entries and the appliance never load `simulators/` (the CLI wires them in); periodic
 * work runs on the one scheduler, `src/core/jobs.ts`.
 */

describe('import scanner', () => {
  it('finds static, re-exported, type-only, side-effect and dynamic imports, and skips comments', () => {
    const source = [
      "import cron, { type ScheduledTask } from 'node-cron';",
      "import type { Logger } from 'pino';",
      "export { QkmError } from './errors.js';",
      "export * from '../client/index.js';",
      "import './side-effect.js';",
      "const m = await import('../simulators/quantis/index.js');",
      '/** e.g. `import { x } from "../in-a-doc-comment.js"` */',
      "// import { y } from '../commented-out.js';",
    ].join('\n');
    expect(specifiersOf(source)).toEqual([
      'node-cron',
      'pino',
      './errors.js',
      '../client/index.js',
      './side-effect.js',
      '../simulators/quantis/index.js',
    ]);
  });
});

describe('src/core is the ground floor', () => {
  const coreDir = join(ROOT, 'src', 'core');
  const files = tsFilesUnder(coreDir);

  it('scans the real core modules', () => {
    expect(files.map((f) => f.slice(coreDir.length + 1))).toEqual(
      expect.arrayContaining(['errors.ts', 'jobs.ts', 'config.ts', 'logger.ts']),
    );
    // The scanner sees imports there (jobs.ts schedules with node-cron): an empty scan passes nothing.
    expect(importsOf(join(coreDir, 'jobs.ts')).map((e) => e.spec)).toContain('node-cron');
  });

  it('imports only other core modules, node built-ins and packages: nothing else of qkm', () => {
    const outside = files
      .flatMap(importsOf)
      .filter((e) => e.spec.startsWith('.') && !(e.to ?? '').startsWith('src/core/'))
      .map((e) => `${e.from} -> ${e.spec}`);
    expect(outside).toEqual([]);
  });
});

describe('the library entries and the appliance are free of simulators', () => {
  // `qkm` (src/index.ts), `qkm/client` and the Appliance itself; type-only imports count too.
  const entries = ['src/index.ts', 'src/client/index.ts', 'src/app.ts'];

  it('follows imports transitively (the entry reaches the drivers the appliance runs)', () => {
    const reached = reachableFrom(entries);
    expect([...reached.keys()]).toEqual(
      expect.arrayContaining([
        'src/app.ts',
        'src/entropy/service.ts',
        'drivers/entropy/quantis-usb/index.ts',
      ]),
    );
  });

  it('reaches no module under simulators/', () => {
    const chains = [...reachableFrom(entries)]
      .filter(([file]) => file.startsWith('simulators/'))
      .map(([, chain]) => chain.join(' -> '));
    expect(chains).toEqual([]);
  });

  it('the CLI is where simulator mode is wired', () => {
    expect(reachableFrom(['src/cli/simulator.ts']).has('simulators/quantis/index.ts')).toBe(true);
  });
});

describe('one scheduler: src/core/jobs.ts', () => {
  const files = tsFilesUnder(join(ROOT, 'src'));
  /** The status page's own browser script polls with setInterval: it runs in the browser, not here. */
  const BROWSER_SCRIPTS = ['src/api/status-page.ts'];

  it('is the only module of src that imports node-cron', () => {
    const importers = files
      .flatMap(importsOf)
      .filter((e) => e.spec === 'node-cron')
      .map((e) => e.from);
    expect(importers).toEqual(['src/core/jobs.ts']);
  });

  it('is the only module of src that calls setInterval', () => {
    const callers = files
      .filter((f) => /\bsetInterval\s*\(/.test(stripComments(readFileSync(f, 'utf8'))))
      .map((f) => relative(ROOT, f))
      .filter((f) => !BROWSER_SCRIPTS.includes(f));
    expect(callers).toEqual(['src/core/jobs.ts']);
  });
});
