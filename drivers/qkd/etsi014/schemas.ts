import { type Static, Type } from '@sinclair/typebox';

/**
 * ETSI GS QKD 014 v1.1.1 §6.1 Status as it appears on the wire (field names exactly as in the
 * standard; sizes in bits). The one definition: the driver checks KME answers against it
 * (wire.ts), the KME simulator serves it as its response schema (an allowlist) and types its
 * core with `EtsiStatus`.
 */
export const EtsiStatusSchema = Type.Object({
  source_KME_ID: Type.String(),
  target_KME_ID: Type.String(),
  master_SAE_ID: Type.String(),
  slave_SAE_ID: Type.String(),
  key_size: Type.Integer({ minimum: 0, description: 'default key size, bits' }),
  stored_key_count: Type.Integer({ minimum: 0 }),
  max_key_count: Type.Integer({ minimum: 0 }),
  max_key_per_request: Type.Integer({ minimum: 0 }),
  max_key_size: Type.Integer({ minimum: 0, description: 'bits' }),
  min_key_size: Type.Integer({ minimum: 0, description: 'bits' }),
  max_SAE_ID_count: Type.Integer({ minimum: 0 }),
  status_extension: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});

export type EtsiStatus = Static<typeof EtsiStatusSchema>;
