import { type Static, Type } from '@sinclair/typebox';

/**
 * Provenance: the record that travels with every piece of material the appliance serves,
 * so a caller can tell exactly where its bytes came from. The rule it exists to enforce:
 * anything produced without a healthy quantum source is `degraded: true` with a `reason`.
 *
 * One source for the server, its API and the SDK: these TypeBox schemas are the routes'
 * response schemas (src/api/schemas.ts) and the types below are `Static<>` of them, so the
 * wire shape and the code that fills it cannot drift apart.
 */

/** Lifecycle of one raw entropy source as seen by the health monitor. */
export const SourceStateSchema = Type.Union(
  [
    Type.Literal('startup'), // running its SP 800-90B start-up test; not yet usable
    Type.Literal('healthy'), // passed start-up, continuous tests passing
    Type.Literal('quarantined'), // failed a health test; waiting for back-off then a fresh start-up test
    Type.Literal('detached'), // the device is gone (unplugged); will be re-opened when it returns
    Type.Literal('closed'),
  ],
  { description: 'startup | healthy | quarantined (failed a health test) | detached (unplugged) | closed' },
);
export type SourceState = Static<typeof SourceStateSchema>;

export const SourceKindSchema = Type.Union([
  Type.Literal('quantum'),
  Type.Literal('physical'),
  Type.Literal('os'),
]);
export type SourceKind = Static<typeof SourceKindSchema>;

export const SourceSnapshotSchema = Type.Object({
  id: Type.String(),
  driver: Type.String(),
  kind: SourceKindSchema,
  simulated: Type.Boolean(),
  state: SourceStateSchema,
  claimedMinEntropy: Type.Number({
    description:
      'Min-entropy per sample the source claims (bits), used for health-test cutoffs and crediting',
  }),
  estimatedMinEntropy: Type.Optional(
    Type.Number({
      description: 'Rolling SP 800-90B §6.3.1 most-common-value estimate (bits per sample), when measured',
    }),
  ),
  reason: Type.Optional(Type.String({ description: 'Why the source is not healthy, when it is not' })),
});
export type SourceSnapshot = Static<typeof SourceSnapshotSchema>;

export const DrbgProvenanceSchema = Type.Object({
  name: Type.String({ description: 'e.g. `CTR_DRBG(AES-256, df)` or `HMAC_DRBG(SHA-512)`' }),
  instance: Type.String({
    description: 'Identifies the DRBG instance, so two outputs can be matched to one seed lineage',
  }),
  reseedCounter: Type.Integer(),
  seededAt: Type.String({ description: 'When the instance was last (re)seeded, ISO-8601' }),
  predictionResistance: Type.Boolean({
    description: 'Whether this request was served with prediction resistance (a reseed right before it)',
  }),
});
export type DrbgProvenance = Static<typeof DrbgProvenanceSchema>;

export const ProvenanceSchema = Type.Object(
  {
    seedOrigin: Type.Union([Type.Literal('quantum'), Type.Literal('os')], {
      description: 'Where the DRBG seed came from: `quantum` sources, or the `os` fallback',
    }),
    sources: Type.Array(SourceSnapshotSchema, {
      description: 'Sources that fed the current seed, with their health at the time of the request',
    }),
    entropyCredited: Type.Number({
      description: 'Min-entropy (bits) credited to the seed material behind this output',
    }),
    drbg: DrbgProvenanceSchema,
    degraded: Type.Boolean(),
    reason: Type.Optional(Type.String({ description: 'Present exactly when `degraded` is true' })),
    at: Type.String({ description: 'ISO-8601 time the output was produced' }),
  },
  {
    description:
      'Where the material came from; degraded=true whenever no healthy quantum source stood behind it',
  },
);
export type Provenance = Static<typeof ProvenanceSchema>;
