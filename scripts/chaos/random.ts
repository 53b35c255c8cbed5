/** Seeded randomness: one seed fixes the parameters, the fault schedule and each writer's mix. */

/** mulberry32: small, fast, and the same sequence on every machine. */
export function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Rnd = () => number;

export const pick = <T>(r: Rnd, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

export const between = (r: Rnd, a: number, b: number): number => a + r() * (b - a);

/** A key of `w`, drawn with probability proportional to its weight. */
export function weighted<T extends string>(r: Rnd, w: Record<T, number>): T {
  const entries = Object.entries(w) as [T, number][];
  let x = r() * entries.reduce((s, [, n]) => s + n, 0);
  for (const [k, n] of entries) if ((x -= n) < 0) return k;
  return entries[0]![0];
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
