import { QkmError } from '../core/errors.js';

/**
 * Maps etcd client errors (gRPC unavailable, deadline exceeded — which is what a member without
 * quorum gives a write — client closed) to QkmError STORE_UNAVAILABLE: the caller can retry, and
 * nothing is served from state that may be stale. QkmErrors and programming errors pass through.
 */
export function toEtcdStoreError(err: unknown, endpoints: readonly string[]): unknown {
  if (err instanceof QkmError || err instanceof TypeError || err instanceof RangeError) return err;
  if (!(err instanceof Error)) return err;
  const name = err.constructor?.name ?? err.name;
  if (
    !/^(GRPC|Etcd|ClientClosed|BrokenCircuit|TaskCancelled)/.test(name) &&
    !/circuit|deadline|unavailable/i.test(err.message)
  )
    return err;
  return new QkmError(
    'STORE_UNAVAILABLE',
    `The etcd store (${endpoints.join(', ')}) is unavailable (${name}); no quorum, unreachable or closed`,
    { cause: err, details: { backend: 'etcd', reason: name } },
  );
}

/** Runs one etcd operation, mapping its errors with `toEtcdStoreError`. */
export async function etcdOp<T>(endpoints: readonly string[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toEtcdStoreError(err, endpoints);
  }
}
