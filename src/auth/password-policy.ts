/**
 * Which new passwords are accepted: long enough, and hard to guess by the estimate of
 * zxcvbn-ts (common passwords, keyboard walks, repeats, dates, names, dictionary words and
 * the user's own email and name), with its feedback as the reason. Checked whenever a
 * password is set: user creation, a password change, the first admin from ADMIN_PASSWORD.
 */
import { ZxcvbnFactory } from '@zxcvbn-ts/core';
import * as common from '@zxcvbn-ts/language-common';
import * as en from '@zxcvbn-ts/language-en';
import { AppError } from '../platform/errors.js';

export const MIN_PASSWORD_LENGTH = 10;
/** zxcvbn's scale: 3 is "safely unguessable: moderate protection from offline attacks". */
const MIN_PASSWORD_SCORE = 3;

let estimator: ZxcvbnFactory | null = null;
function zxcvbn(): ZxcvbnFactory {
  estimator ??= new ZxcvbnFactory({
    translations: en.translations,
    graphs: common.adjacencyGraphs,
    dictionary: { ...common.dictionary, ...en.dictionary },
    useLevenshteinDistance: true,
  });
  return estimator;
}

/** Words of the user's own identity: a password built on them is guessed first. */
function personalWords(user: { email?: string; name?: string }): string[] {
  const words = new Set<string>();
  const add = (w: string | undefined) => {
    const v = w?.trim().toLowerCase();
    if (v && v.length >= 3) words.add(v);
  };
  if (user.email) {
    add(user.email);
    const [local, domain] = user.email.toLowerCase().split('@');
    add(local);
    for (const part of local?.split(/[._+-]/) ?? []) add(part);
    add(domain?.split('.')[0]);
  }
  if (user.name) {
    add(user.name);
    for (const part of user.name.split(/\s+/)) add(part.replace(/[^\p{L}\p{N}]/gu, ''));
  }
  add('imagemedix');
  return [...words];
}

/** The reason a password is refused, or null when it is acceptable. */
function passwordWeakness(password: string, user: { email?: string; name?: string }): string | null {
  if (password.length < MIN_PASSWORD_LENGTH) return `password must be at least ${MIN_PASSWORD_LENGTH} characters long`;
  const lower = password.toLowerCase();
  const words = personalWords(user);
  // What is left once the user's own words are taken out must be a password on its own.
  let rest = lower;
  for (const w of [...words].sort((a, b) => b.length - a.length)) rest = rest.split(w).join('');
  if (rest !== lower && rest.length < MIN_PASSWORD_LENGTH / 2 + 1) {
    return 'password must not be built on your own email address or name';
  }
  const result = zxcvbn().check(password, words);
  if (result.score >= MIN_PASSWORD_SCORE) return null;
  const why = [result.feedback.warning, ...result.feedback.suggestions].filter((s): s is string => Boolean(s));
  return `password is too easy to guess${why.length > 0 ? `: ${why.join(' ')}` : ''}`;
}

export function assertStrongPassword(password: string, user: { email?: string; name?: string }): void {
  const weakness = passwordWeakness(password, user);
  if (weakness) throw new AppError('bad_request', weakness);
}
