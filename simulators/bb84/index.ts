/** The BB84 link simulator: model, latency, key generator and the `qkm sim bb84` helpers. */
export * from './cli.js';
export * from './generator.js';
export * from './latency.js';
export * from './model.js';
