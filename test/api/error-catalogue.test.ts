import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE } from '../../src/core/errors.js';

describe('error catalogue', () => {
  const readme = readFileSync(resolve(import.meta.dirname, '../../README.md'), 'utf8');

  it('documents every code in the README error table with its status', () => {
    for (const [code, { status }] of Object.entries(ERROR_CATALOGUE)) {
      expect(readme, code).toContain(`| \`${code}\` | ${status} |`);
    }
  });

  it('uses 4xx for caller mistakes and 5xx only for unavailability and internal faults', () => {
    const fiveHundreds = Object.entries(ERROR_CATALOGUE)
      .filter(([, e]) => e.status >= 500)
      .map(([c]) => c);
    expect(fiveHundreds.sort()).toEqual(
      [
        'ENTROPY_UNAVAILABLE',
        'INTERNAL',
        'POSTURE_UNAVAILABLE',
        // Upstream faults, not the caller's: the Provider is down, or its answer fails its signature.
        'PROVIDER_RESPONSE_INVALID',
        'PROVIDER_UNAVAILABLE',
        'QKD_UNAVAILABLE',
        'QUANTUM_ENTROPY_UNAVAILABLE',
        'STORE_UNAVAILABLE',
      ].sort(),
    );
  });
});
