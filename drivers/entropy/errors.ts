import type { EntropySourceErrorShape } from './interface.js';

export type EntropySourceFailure = 'disconnected' | 'canceled' | 'timeout' | 'io';

/** The one error class entropy drivers throw; see `EntropySourceErrorShape` for the contract. */
export class EntropySourceError extends Error implements EntropySourceErrorShape {
  readonly sourceId: string;
  readonly failure: EntropySourceFailure;

  constructor(
    sourceId: string,
    failure: EntropySourceFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'EntropySourceError';
    this.sourceId = sourceId;
    this.failure = failure;
  }

  get disconnected(): boolean {
    return this.failure === 'disconnected';
  }
  get canceled(): boolean {
    return this.failure === 'canceled';
  }
  get timeout(): boolean {
    return this.failure === 'timeout';
  }
  get io(): boolean {
    return this.failure === 'io';
  }
}
