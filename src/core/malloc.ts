/**
 * The C allocator's setting a long-running qkm wants on glibc (#16). glibc's malloc raises its
 * mmap threshold each time a block above it is freed (up to 32 MB), after which LevelDB's
 * compaction and flush buffers come from the brk heap and arenas instead of their own mappings,
 * and the holes they leave are kept, never returned: a 5-minute soak grew anonymous RSS by
 * 1.6–2.7 MB/min with the V8 heap, external memory and LevelDB's caches all flat. Pinning the
 * threshold at glibc's own starting value (128 KiB) switches that adjustment off: the same soak
 * stays flat (as it does with jemalloc preloaded). glibc reads the variable once, when the
 * process starts, so it has to be set by whatever launches qkm: `firmware-notes/qkm.service`,
 * `npm start` and the soak benchmark set it; `qkm start` warns when it is missing.
 */
export const GLIBC_MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '131072' };

/** Settings that also stop glibc's dynamic threshold, or replace glibc's malloc altogether. */
const FIXES_THRESHOLD = [
  'MALLOC_MMAP_THRESHOLD_',
  'MALLOC_TRIM_THRESHOLD_',
  'MALLOC_TOP_PAD_',
  'MALLOC_MMAP_MAX_',
];
const TUNABLE = /glibc\.malloc\.(mmap_threshold|trim_threshold|top_pad|mmap_max)=/;
const OTHER_ALLOCATOR = /(jemalloc|tcmalloc|mimalloc)/;

/** True when this process runs on glibc (not musl, not macOS/Windows). */
export function runsOnGlibc(): boolean {
  if (process.platform !== 'linux') return false;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)
    ?.header;
  return typeof header?.glibcVersionRuntime === 'string';
}

/**
 * A warning for the operator when glibc's malloc runs with its dynamic mmap threshold (see
 * GLIBC_MALLOC_ENV); undefined when it does not (set, another allocator preloaded, not glibc).
 */
export function mallocWarning(
  env: NodeJS.ProcessEnv = process.env,
  glibc = runsOnGlibc(),
): string | undefined {
  if (!glibc) return undefined;
  if (FIXES_THRESHOLD.some((name) => (env[name] ?? '') !== '')) return undefined;
  if (TUNABLE.test(env.GLIBC_TUNABLES ?? '')) return undefined;
  if (OTHER_ALLOCATOR.test(env.LD_PRELOAD ?? '')) return undefined;
  const [name, value] = Object.entries(GLIBC_MALLOC_ENV)[0]!;
  return (
    `glibc malloc adjusts its mmap threshold: native memory freed by LevelDB is kept, and RSS grows ` +
    `over a long run; start qkm with ${name}=${value} (qkm.service and npm start set it)`
  );
}
