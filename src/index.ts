/** Library entry: embed the appliance, or use its pieces. Agents usually want `qkm/client`. */
export {
  Appliance,
  type ApplianceOptions,
  type SimulatedDevices,
  type SimulatorFactory,
} from './app.js';
export { loadConfig, type QkmConfig } from './core/config.js';
export { ERROR_CATALOGUE, QkmError, type ErrorCode } from './core/errors.js';
export type { Provenance, SourceSnapshot } from './core/provenance.js';
export { EntropyService } from './entropy/service.js';
export type { EntropyProvider, EntropyRequest, EntropyResult } from './entropy/types.js';
export * from './client/index.js';
