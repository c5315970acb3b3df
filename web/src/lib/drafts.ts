/**
 * Text a physician has typed but not yet saved (review notes, an annotation, a patient note),
 * kept while they look at another page of the app and come back. Held in memory only: patient
 * data is never written to the browser's storage, so a reload loses it. Signing out forgets
 * it, and so does another user signing in after a session expired (the next user at the
 * workstation must not find it); the same user signing in again finds it where it was.
 */
import { useCallback, useState } from 'react';

const drafts = new Map<string, string>();
let owner: string | null = null;

/** A text field's value that outlives the page: [value, set, forget (once saved)]. */
export function useDraft(key: string, initial = ''): [string, (value: string) => void, () => void] {
  const [value, setValue] = useState(() => drafts.get(key) ?? initial);
  const set = useCallback(
    (next: string) => {
      setValue(next);
      if (next === initial) drafts.delete(key);
      else drafts.set(key, next);
    },
    [key, initial],
  );
  const forget = useCallback(() => void drafts.delete(key), [key]);
  return [value, set, forget];
}

/** Whether any typed text is not saved yet (signing out or leaving the app would lose it). */
export function hasDrafts(): boolean {
  return drafts.size > 0;
}

// Closing the tab, reloading or typing another address loses every draft (they are in memory
// only): the browser asks first, as it does for any page with unsaved input.
if (typeof window !== 'undefined') {
  window.addEventListener('beforeunload', (event) => {
    if (drafts.size > 0) event.preventDefault();
  });
}

export function forgetAllDrafts(): void {
  drafts.clear();
  owner = null;
}

/** Called when a user signs in: another user's drafts are forgotten. */
export function draftsBelongTo(userId: string): void {
  if (owner !== userId) drafts.clear();
  owner = userId;
}
