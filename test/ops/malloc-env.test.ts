import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GLIBC_MALLOC_ENV, mallocWarning, runsOnGlibc } from '../../src/core/malloc.js';

/**
 * The allocator setting a long run needs on glibc (#16): set by every launcher the project ships,
 * and warned about by `qkm start` when whatever launched it did not set it.
 */
const root = resolve(import.meta.dirname, '../..');
const [NAME, VALUE] = Object.entries(GLIBC_MALLOC_ENV)[0]!;

describe('glibc malloc setting', () => {
  it('qkm.service and npm start set it, with the value qkm asks for', async () => {
    const unit = await readFile(resolve(root, 'firmware-notes/qkm.service'), 'utf8');
    expect(unit).toMatch(new RegExp(`^Environment=(.* )?${NAME}=${VALUE}( |$)`, 'm'));
    const pkg = JSON.parse(await readFile(resolve(root, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(pkg.scripts.start).toContain(`${NAME}=${VALUE} node `);
  });

  it('warns on glibc when nothing fixes the threshold, naming the variable and value', () => {
    const warning = mallocWarning({}, true);
    expect(warning).toContain(`${NAME}=${VALUE}`);
  });

  it.each([
    [{ MALLOC_MMAP_THRESHOLD_: '131072' }],
    [{ MALLOC_TRIM_THRESHOLD_: '1048576' }],
    [{ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=262144' }],
    [{ GLIBC_TUNABLES: 'glibc.rtld.optional_static_tls=1:glibc.malloc.trim_threshold=65536' }],
    [{ LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2' }],
  ])('stays quiet when %o already fixes it', (env) => {
    expect(mallocWarning(env, true)).toBeUndefined();
  });

  it('stays quiet off glibc, and for settings that do not touch the threshold', () => {
    expect(mallocWarning({}, false)).toBeUndefined();
    expect(mallocWarning({ MALLOC_MMAP_THRESHOLD_: '' }, true)).toBeDefined();
    expect(mallocWarning({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, true)).toBeDefined();
  });

  it.runIf(process.platform === 'linux')('detects the C library this test runs on', async () => {
    // Debian/Ubuntu CI and this project's hosts are glibc; musl (Alpine) has no glibcVersionRuntime.
    const maps = await readFile('/proc/self/maps', 'utf8');
    expect(runsOnGlibc()).toBe(/libc\.so\.6/.test(maps));
  });
});
