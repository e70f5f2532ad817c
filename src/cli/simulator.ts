import {
  SIMULATED_QUANTIS_SERIAL,
  type SimulatedQuantisSetup,
  createSimulatedQuantis,
} from '../../simulators/quantis/index.js';
import type { Appliance, SimulatorFactory } from '../app.js';

/**
 * Simulator mode as `qkm start` runs it: one simulated Quantis USB on a simulated bus, driven by
 * the real Quantis driver, at the configured rate. The CLI wires it into the appliance (the
 * appliance and the library entry never import `simulators/`); tests and the demo use it too.
 */
export const simulatedQuantis: SimulatorFactory<SimulatedQuantisSetup> = (config) => {
  const sim = createSimulatedQuantis({
    serial: SIMULATED_QUANTIS_SERIAL,
    rateBps: config.entropy.simulatedRateBytesPerSec * 8,
  });
  return { sources: [{ factory: sim.factory }], families: [sim.factory], faults: sim.device, controls: sim };
};

/** An appliance started with `simulatedQuantis`: `appliance.simulator` is the bus and device. */
export type SimulatedAppliance = Appliance<SimulatedQuantisSetup>;
