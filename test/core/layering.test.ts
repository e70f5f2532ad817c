import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, importsOf, specifiersOf, tsFilesUnder } from '../helpers/imports.js';

/**
 * Layering rules that the type checker cannot see (issue #15, Structure): `src/core` is the
 * ground floor, so everything else may build on it and it builds on nothing else of qkm.
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
