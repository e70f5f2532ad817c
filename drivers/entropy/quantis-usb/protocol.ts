/**
 * Quantis USB wire protocol, as implemented by ID Quantique's Quantis library for Unix
 * (`QuantisUsb_Commands.h`, `QuantisUsb_Unix.c`, © ID Quantique, BSD/GPL-2). Facts only; see
 * firmware-notes/quantis-usb.md for the sources and the operator's view.
 */

/** USB vendor id (registered to Ellisys, who built the USB interface for ID Quantique). */
export const QUANTIS_VENDOR_ID = 0x0aba;
export const QUANTIS_PRODUCT_ID = 0x0102;

export const QUANTIS_CONFIGURATION = 1;
export const QUANTIS_INTERFACE = 0;
/** Bulk IN endpoint carrying the random stream; whole `wMaxPacketSize` packets only. */
export const QUANTIS_BULK_IN_ENDPOINT = 0x86;
/** Timeout the vendor library uses for every control and bulk transfer. */
export const QUANTIS_REQUEST_TIMEOUT_MS = 1000;
/** Packet size at high speed (USB 2); 64 at full speed. The driver reads it from the descriptor. */
export const QUANTIS_HIGH_SPEED_PACKET = 512;

/** bmRequestType: vendor | recipient interface | device-to-host. */
export const REQUEST_TYPE_IN = 0xc1;
/** bmRequestType: vendor | recipient interface | host-to-device. */
export const REQUEST_TYPE_OUT = 0x41;

/** Vendor requests (bRequest); wValue = 0, wIndex = 0 for all of them. */
export const QuantisRequest = {
  /** IN, 4 bytes little-endian. */
  GET_BOARD_VERSION: 0x10,
  /** OUT, no data. */
  MODULE_DISABLE: 0x11,
  /** OUT, no data. */
  MODULE_ENABLE: 0x12,
  /** IN, 1 byte; ≤ 0 means the module is not ready (the library refuses to read then). */
  GET_MODULES_STATUS: 0x13,
  /** IN, 1 byte. */
  GET_MODULES_POWER: 0x14,
  /** IN, 1 byte. */
  GET_MODULES_MASK: 0x15,
  /** IN, 4 bytes little-endian: data rate per module in kbit/s. */
  GET_MODULES_RATE: 0x16,
  /** IN, 1 byte: non-zero when the device asks the host to run AIS-31 start-up tests. */
  GET_AIS31_STARTUP_TESTS_REQUEST_FLAG: 0x17,
  /** OUT, no data: clears that request. */
  CLEAR_AIS31_STARTUP_TESTS_REQUEST_FLAG: 0x18,
} as const;

/** Bytes the board-reset sequence reads and throws away after re-enabling the module. */
export const QUANTIS_RESET_DISCARD_BYTES = 4096;
