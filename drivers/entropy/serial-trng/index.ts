export {
  createSerialTrngFactory,
  parseSerialRngEnv,
  SERIAL_TRNG_DRIVER,
  SerialTrngSource,
} from './driver.js';
export type { ConfiguredSerialRng, SerialTrngFactoryOptions } from './driver.js';
export * from './devices.js';
