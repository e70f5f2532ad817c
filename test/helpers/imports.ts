import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * A small static import scanner for the layering tests (test/core/layering.test.ts). It reads
 * TypeScript sources as text: `import … from`, `export … from`, side-effect `import '…'` and
 * `import('…')`, type-only imports included (they end up in the published `.d.ts` files, so a
 * type import still ties one layer to another). Comments are dropped first, so an example in a
 * doc comment is not an import.
 */

/** The repository root (test/helpers/../..). */
export const ROOT = resolve(import.meta.dirname, '..', '..');

const IMPORT_RE =
  /\b(?:import|export)\s+(?:type\s+)?[^'";]*?\sfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|\bimport\s+['"]([^'"]+)['"]/g;

/** The source without block comments and whole-line `//` comments. */
export function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
}

/** Every module specifier the source text imports or re-exports, in order. */
export function specifiersOf(source: string): string[] {
  const code = stripComments(source);
  const out: string[] = [];
  for (const m of code.matchAll(IMPORT_RE)) out.push((m[1] ?? m[2] ?? m[3]) as string);
  return out;
}

/** The `.ts` file a relative specifier names (NodeNext style: `./x.js` is `./x.ts`), or undefined. */
export function resolveRelative(fromFile: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = resolve(dirname(fromFile), spec);
  const candidates = [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts'), base];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile());
}

/** All `.ts` files under `dir` (absolute), recursively. */
export function tsFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tsFilesUnder(path));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

export interface ImportEdge {
  /** Importing file, relative to the repository root. */
  from: string;
  /** The specifier as written. */
  spec: string;
  /** The imported file relative to the root, for relative specifiers that resolve. */
  to?: string;
}

/** The import edges of one file. */
export function importsOf(file: string): ImportEdge[] {
  const from = relative(ROOT, file);
  return specifiersOf(readFileSync(file, 'utf8')).map((spec) => {
    const target = resolveRelative(file, spec);
    return target ? { from, spec, to: relative(ROOT, target) } : { from, spec };
  });
}

/**
 * Every file reachable from `entries` through relative imports, with the chain that reaches it
 * (so a failure names the path that pulled a forbidden module in).
 */
export function reachableFrom(entries: string[]): Map<string, string[]> {
  const chains = new Map<string, string[]>();
  const queue: string[] = [];
  for (const e of entries) {
    const rel = relative(ROOT, resolve(ROOT, e));
    chains.set(rel, [rel]);
    queue.push(rel);
  }
  while (queue.length > 0) {
    const file = queue.shift() as string;
    for (const edge of importsOf(join(ROOT, file))) {
      if (!edge.to || chains.has(edge.to)) continue;
      chains.set(edge.to, [...(chains.get(file) ?? []), edge.to]);
      queue.push(edge.to);
    }
  }
  return chains;
}
