/** Small hooks the pages share: the tab's title, URL-held list filters, debouncing, form actions. */
import { useEffect, useState, type FormEvent } from 'react';
import { useSearchParams } from 'react-router-dom';
import { errorMessage } from '../api/client';

/** Sets the browser tab's title ("… · ImageMedix") while the page is shown. */
export function useDocumentTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · ImageMedix`;
  }, [title]);
}

/** `value`, once it has stopped changing for `ms` (typing in a search box). */
export function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

export interface UrlFilters {
  /** The current page, 1 when absent or not a page number. */
  page: number;
  /** A filter's value, '' when absent. */
  get: (name: string) => string;
  /** Sets (or, for '', removes) a filter and goes back to the first page. */
  set: (name: string, value: string) => void;
  setPage: (page: number) => void;
  clear: () => void;
  /** True when any filter (not the page) is set. */
  any: boolean;
}

/**
 * A list's filters and page kept in the URL's query, so a reload, a shared link or the back
 * button shows the same list.
 */
export function useUrlFilters(): UrlFilters {
  const [params, setParams] = useSearchParams();
  const update = (change: (next: URLSearchParams) => void) => {
    const next = new URLSearchParams(params);
    change(next);
    setParams(next);
  };
  return {
    page: Math.max(1, Math.floor(Number(params.get('page'))) || 1),
    get: (name) => params.get(name) ?? '',
    set: (name, value) =>
      update((next) => {
        if (value) next.set(name, value);
        else next.delete(name);
        next.delete('page');
      }),
    setPage: (page) => update((next) => next.set('page', String(page))),
    clear: () => setParams(new URLSearchParams()),
    any: [...params.keys()].some((k) => k !== 'page'),
  };
}

/**
 * A text box that sets URL filter `name` once the typing pauses. Returns the box's value and
 * its setter; the box follows the URL when the filter is changed elsewhere (cleared).
 */
export function useDebouncedFilter(filters: UrlFilters, name: string, ms = 300): [string, (value: string) => void] {
  const current = filters.get(name);
  const [input, setInput] = useState(current);
  const settled = useDebounced(input, ms);
  useEffect(() => {
    // Only the settled input drives the URL (`filters` is a new object every render).
    if (settled.trim() !== current) filters.set(name, settled.trim());
  }, [settled]);
  useEffect(() => {
    // The URL changed from elsewhere (a cleared filter, the back button): the box follows it.
    if (current !== input.trim()) setInput(current);
  }, [current]);
  return [input, setInput];
}

export interface FormAction {
  /** The form's onSubmit: prevents the page load, runs the action, keeps its error. */
  onSubmit: (e?: FormEvent) => Promise<void>;
  busy: boolean;
  error: string | null;
  setError: (message: string | null) => void;
}

/**
 * Runs a form's action with the busy flag and the error message every form shows: the error
 * is cleared on each try and set to the API's message when the action fails.
 */
export function useFormAction(action: () => Promise<void>, describe: (err: unknown) => string = errorMessage): FormAction {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  async function onSubmit(e?: FormEvent) {
    e?.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  }
  return { onSubmit, busy, error, setError };
}
