export {
  createQuantisFactory,
  QUANTIS_DEFAULT_MIN_ENTROPY,
  QUANTIS_DRIVER,
  QuantisUsbSource,
  toSourceError,
} from './driver.js';
export type { QuantisFactoryOptions } from './driver.js';
export { createLibusbTransport, mapLibusbError } from './libusb-transport.js';
export * from './protocol.js';
export { UsbTransportError } from './transport.js';
export type {
  UsbDeviceHandle,
  UsbDeviceSummary,
  UsbFailure,
  UsbTransport,
  UsbTransportEvents,
} from './transport.js';
