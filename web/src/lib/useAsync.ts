import { useCallback, useEffect, useState } from 'react';
import { errorMessage } from '../api/client';

export interface Async<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
  reload: () => void;
  setData: (update: T | ((old: T | null) => T)) => void;
}

/** Runs `load` when `deps` change; keeps the last data while reloading (no flicker). */
export function useAsync<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Async<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const run = useCallback(load, deps);
  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    run(controller.signal).then(
      (value) => {
        if (controller.signal.aborted) return;
        setData(value);
        setError(null);
        setLoading(false);
      },
      (err: unknown) => {
        if (controller.signal.aborted) return;
        setError(errorMessage(err));
        setLoading(false);
      },
    );
    return () => controller.abort();
  }, [run, tick]);
  return {
    data,
    error,
    loading,
    reload: () => setTick((n) => n + 1),
    setData: (update) => setData((old) => (typeof update === 'function' ? (update as (o: T | null) => T)(old) : update)),
  };
}
