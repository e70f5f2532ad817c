import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AuditSink } from '../../audit/types.js';
import { QkmError } from '../../core/errors.js';
import { errorResponses } from '../schemas.js';

/**
 * Fault injection into the simulated Quantis of a running appliance, for operators' drills and
 * test harnesses: admin only, and only in simulator mode (hardware mode answers 409
 * SIMULATOR_ONLY — a real device's faults cannot be switched, and pretending would mislead).
 * Every injection is audited (`sim.fault`).
 */

export const SIM_FAULT_KINDS = [
  'stuck',
  'bias',
  'stall',
  'short-packet',
  'status-not-ready',
  'ais31',
  'unplug',
  'replug',
  'clear',
] as const;
export type SimFaultKind = (typeof SIM_FAULT_KINDS)[number];

const FaultsSchema = Type.Object({
  stall: Type.Boolean(),
  shortPacket: Type.Boolean(),
  stuck: Type.Boolean(),
  bias: Type.Number(),
  statusNotReady: Type.Boolean(),
  attached: Type.Boolean(),
  ais31Pending: Type.Boolean(),
});

/** The faults a simulated entropy device can be switched into (see simulators/quantis). */
export interface SimulatedFaults {
  stall: boolean;
  shortPacket: boolean;
  stuck: boolean;
  /** Fraction (0–1) of output bytes forced to 0x00. */
  bias: number;
  statusNotReady: boolean;
}

/**
 * The fault controls of a simulated entropy device, as these routes drive them. Types only: the
 * simulator implements it (`SimulatedQuantisDevice`), and the API never loads the simulators.
 */
export interface SimulatedFaultTarget {
  readonly serial: string;
  readonly attached: boolean;
  readonly ais31Pending: boolean;
  getFaults(): SimulatedFaults;
  setFaults(faults: Partial<SimulatedFaults>): void;
  clearFaults(): void;
  raiseAis31(): void;
  unplug(): void;
  replug(): void;
}

export interface SimRoutesOptions {
  /** The simulated device, or undefined in hardware mode. */
  device: SimulatedFaultTarget | undefined;
  audit?: AuditSink;
}

function view(d: SimulatedFaultTarget): SimulatedFaults & { attached: boolean; ais31Pending: boolean } {
  return { ...d.getFaults(), attached: d.attached, ais31Pending: d.ais31Pending };
}

export const simRoutes: FastifyPluginAsyncTypebox<SimRoutesOptions> = async (app, opts) => {
  const device = (): SimulatedFaultTarget => {
    if (!opts.device) {
      throw new QkmError(
        'SIMULATOR_ONLY',
        'fault injection exists only in simulator mode; this appliance runs on hardware',
      );
    }
    return opts.device;
  };

  app.get(
    '/v1/sim/faults',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Faults switched on in the simulated Quantis (simulator mode only)',
        tags: ['sim'],
        security: [{ bearer: [] }],
        response: { 200: FaultsSchema, ...errorResponses(409) },
      },
    },
    async () => view(device()),
  );

  app.post(
    '/v1/sim/faults',
    {
      config: { scope: 'admin' },
      schema: {
        summary: 'Inject a fault into the simulated Quantis, or clear them (simulator mode only)',
        tags: ['sim'],
        security: [{ bearer: [] }],
        body: Type.Object(
          {
            kind: Type.Union(SIM_FAULT_KINDS.map((k) => Type.Literal(k))),
            fraction: Type.Optional(
              Type.Number({
                minimum: 0,
                maximum: 1,
                description: 'bias: share of bytes forced to 0x00 (default 0.5)',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: FaultsSchema, ...errorResponses(409) },
      },
    },
    async (request) => {
      const d = device();
      const { kind, fraction } = request.body;
      if (fraction !== undefined && kind !== 'bias') {
        throw new QkmError('INVALID_PARAMETER', 'fraction applies to kind "bias" only');
      }
      switch (kind) {
        case 'stuck':
          d.setFaults({ stuck: true });
          break;
        case 'bias':
          d.setFaults({ bias: fraction ?? 0.5 });
          break;
        case 'stall':
          d.setFaults({ stall: true });
          break;
        case 'short-packet':
          d.setFaults({ shortPacket: true });
          break;
        case 'status-not-ready':
          d.setFaults({ statusNotReady: true });
          break;
        case 'ais31':
          d.raiseAis31();
          break;
        case 'unplug':
          d.unplug();
          break;
        case 'replug':
          d.replug();
          break;
        case 'clear':
          d.clearFaults();
          break;
      }
      await opts.audit?.append({
        type: 'sim.fault',
        actor: request.agent?.name ?? 'unknown',
        details: { kind, ...(kind === 'bias' ? { fraction: fraction ?? 0.5 } : {}), device: d.serial },
      });
      return view(d);
    },
  );
};
