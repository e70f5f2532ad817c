/** One machine-readable benchmark line. `ratio` = value / baseline, both measured in the same run. */
export type BenchRecord = {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  baseline?: number;
  ratio?: number;
  /** 95% bootstrap interval of `ratio`, where the bench can resample it. */
  ratioCi95?: [number, number];
  goal?: string;
  pass?: boolean;
  note?: string;
};
