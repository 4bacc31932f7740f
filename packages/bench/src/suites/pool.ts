/** Runs `count` operations with `concurrency` workers pulling the next index; times the whole batch and each operation. */

export interface BatchOutcome<T> {
  readonly seconds: number;
  /** Per operation (undefined where it failed). */
  readonly results: Array<T | undefined>;
  readonly errors: string[];
}

export async function runBatch<T>(
  count: number,
  concurrency: number,
  operation: (index: number, worker: number) => Promise<T>,
  options: { stopOnError?: boolean } = {},
): Promise<BatchOutcome<T>> {
  const results: Array<T | undefined> = Array.from({ length: count }, () => undefined);
  const errors: string[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async (w: number) => {
    for (;;) {
      const index = next++;
      if (index >= count || (options.stopOnError && errors.length > 0)) return;
      try {
        results[index] = await operation(index, w);
      } catch (e) {
        errors.push(`#${index}: ${(e as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, (_, w) => worker(w)));
  return { seconds: (performance.now() - started) / 1000, results, errors };
}

/** The first few error messages, for the results file. */
export function firstErrors(errors: readonly string[], keep = 5): string[] {
  return errors.slice(0, keep).map((e) => e.slice(0, 500));
}
