/**
 * The USB-serial TRNGs the driver knows, by VID:PID, with their protocol quirks. Sources of
 * every fact are in firmware-notes/truerng.md and firmware-notes/onerng.md.
 *
 * None of these is a quantum source: TrueRNG digitises avalanche noise of a reverse-biased
 * semiconductor junction; OneRNG samples an avalanche-diode circuit (and optionally an RF
 * receiver). Both are classical physical noise, so their sources report `kind: 'physical'`.
 */

export type SerialRngModel = 'truerng' | 'truerngpro' | 'onerng';

export interface SerialRngModelInfo {
  model: SerialRngModel;
  description: string;
  /** Nominal output in bytes/s (vendor figures). */
  nominalRate: number;
  /**
   * Default claimed min-entropy per byte. All three whiten on the device (TrueRNG's mixing
   * function, TrueRNGpro's Mersenne-Twister stage, OneRNG's CRC16), which makes the output
   * *look* like 8 bits/byte while hiding the raw source's real entropy; the claim therefore
   * follows the raw source, not the whitened stream: ≈ 7 bits/byte is what Moonbase Otago
   * measures for OneRNG's raw avalanche source, and we use no more for TrueRNG.
   */
  claimedMinEntropy: number;
}

export const MODELS: Record<SerialRngModel, SerialRngModelInfo> = {
  truerng: {
    model: 'truerng',
    description: 'ubld.it TrueRNG (avalanche noise)',
    nominalRate: 400_000 / 8,
    claimedMinEntropy: 7,
  },
  truerngpro: {
    model: 'truerngpro',
    description: 'ubld.it TrueRNGpro (avalanche noise)',
    nominalRate: 3_200_000 / 8,
    claimedMinEntropy: 7,
  },
  onerng: {
    model: 'onerng',
    description: 'Moonbase Otago OneRNG (avalanche diode)',
    nominalRate: 350_000 / 8,
    claimedMinEntropy: 7,
  },
};

/** USB ids as `SerialPort.list()` reports them: lower-case hex without 0x. */
export const KNOWN_DEVICES: ReadonlyArray<{ vendorId: number; productId: number; model: SerialRngModel }> = [
  { vendorId: 0x04d8, productId: 0xf5fe, model: 'truerng' }, // TrueRNG, TrueRNG v2, TrueRNG v3
  { vendorId: 0x16d0, productId: 0x0aa0, model: 'truerngpro' }, // TrueRNGpro
  { vendorId: 0x04d8, productId: 0xebb5, model: 'truerngpro' }, // TrueRNGpro V2
  { vendorId: 0x1d50, productId: 0x6086, model: 'onerng' }, // OneRNG
];

export function modelFor(vendorId: number, productId: number): SerialRngModel | undefined {
  return KNOWN_DEVICES.find((d) => d.vendorId === vendorId && d.productId === productId)?.model;
}

/**
 * TrueRNGpro mode selection: the device watches the baud rates the host opens it with. Open
 * at 110 (hold ~0.5 s), close; open at 300, close; open at 110, close — the "knock" — then the
 * next open's baud rate selects the mode.
 */
export const TRUERNGPRO_KNOCK = [110, 300, 110] as const;
export const TRUERNGPRO_MODES = {
  normal: 300, // both noise streams combined, whitened (default)
  psdebug: 1200, // power-supply voltage in mV, ASCII
  rngdebug: 2400, // raw ADC debug, ASCII
  rng1white: 4800, // generator 1 only, whitened
  rng2white: 9600, // generator 2 only, whitened
  rawbin: 19200, // raw ADC samples, binary
  rawasc: 38400, // raw ADC samples, ASCII
  unwhitened: 57600, // RNG1 − RNG2 unwhitened (TrueRNGpro V2 only)
  normalasc: 115200, // normal output as ASCII (TrueRNGpro V2 only)
} as const;
export type TrueRngProMode = keyof typeof TRUERNGPRO_MODES;

/** OneRNG firmware commands (ASCII, newline-terminated). */
export const ONERNG = {
  run: 'cmdO\n',
  pause: 'cmdo\n',
  flush: 'cmdw\n',
  version: 'cmdv\n',
  /** Mode digits 0–7 (cmd0 … cmd7): bit 0 disables the whitener, bit 1 enables RF, bit 2 disables avalanche. */
  mode: (m: number) => `cmd${(m & 0xf).toString(16)}\n`,
} as const;

/** OneRNG modes that produce noise: 0 avalanche+whitener (default), 1 raw avalanche, 2/3 with RF, 6/7 RF only. */
export const ONERNG_DEFAULT_MODE = 0;
