import { createQuantisFactory } from '../../drivers/entropy/quantis-usb/driver.js';
import type { EntropySourceFactory } from '../../drivers/entropy/interface.js';
import type { SimulatedQuantisDevice, SimulatedQuantisOptions } from './device.js';
import { SimulatedUsbTransport } from './transport.js';

export { SimulatedQuantisDevice } from './device.js';
export type { QuantisDeviceStats, QuantisFaults, SimulatedQuantisOptions } from './device.js';
export { SimulatedUsbTransport } from './transport.js';

export interface SimulatedQuantisSetup {
  /** The real Quantis driver factory, running over the simulated bus. */
  factory: EntropySourceFactory;
  /** Fault controls: `unplug()`, `replug()`, `setFaults({...})`, `clearFaults()`, `raiseAis31()`. */
  device: SimulatedQuantisDevice;
  /** The bus, to add more devices (`transport.addQuantis({ serial })`). */
  transport: SimulatedUsbTransport;
}

/**
 * Serial number of the simulated Quantis of simulator mode: the appliance (`qkm start`,
 * `qkm status`) and the local `qkm sources list|test --simulated` use the same one, so the
 * source id `quantis-usb:SIM00001` is the same everywhere.
 */
export const SIMULATED_QUANTIS_SERIAL = 'SIM00001';

/**
 * Simulator mode in one call: a simulated Quantis USB on a simulated bus, and the real
 * `createQuantisFactory` driving it. `rateBps` is in bits per second (default 4 Mbit/s).
 *
 * ```ts
 * const { factory, device } = createSimulatedQuantis({ serial: 'SIM00001' });
 * const src = await factory.open();          // id 'quantis-usb:SIM00001', simulated: true
 * device.setFaults({ stuck: true });         // health tests should now fail
 * ```
 */
export function createSimulatedQuantis(
  options: SimulatedQuantisOptions & { claimedMinEntropy?: number; resetSettleMs?: number } = {},
): SimulatedQuantisSetup {
  const transport = new SimulatedUsbTransport();
  const device = transport.addQuantis(options);
  const factory = createQuantisFactory({
    transport,
    // The simulator's board settles at once; keep a short wait so the sequence is exercised.
    resetSettleMs: options.resetSettleMs ?? 10,
    ...(options.claimedMinEntropy === undefined ? {} : { claimedMinEntropy: options.claimedMinEntropy }),
  });
  return { factory, device, transport };
}
