/**
 * "1 second", "45 seconds", "15 minutes", "3 hours": how long a person is told to wait, in the
 * messages that ask them to try again later and in analysis estimates. Rounded up, so nobody is
 * told to come back before they can; seconds up to a minute and a half, minutes up to two hours.
 */
export function waitInWords(seconds: number): string {
  const s = Math.max(1, Math.ceil(Number.isFinite(seconds) ? seconds : 1));
  if (s < 90) return s === 1 ? '1 second' : `${s} seconds`;
  const minutes = Math.ceil(s / 60);
  if (minutes < 120) return `${minutes} minutes`;
  return `${Math.ceil(minutes / 60)} hours`;
}
