/** One machine-readable benchmark line. `ratio` = value / baseline, both measured in the same run. */
export type BenchRecord = {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  baseline?: number;
  ratio?: number;
  goal?: string;
  pass?: boolean;
  note?: string;
};
