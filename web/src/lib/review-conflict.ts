/**
 * A review saved over a finding that changed after the physician opened the scan: the API
 * refuses it (412) when the review carries the version it was made on (If-Match), and the
 * review form says what happened in words, keeping what the physician chose and typed.
 * Pure (no DOM, no React), so it is tested under node.
 */

/** The If-Match value for a review of the finding as loaded (the scan's ETag). */
export function ifMatchFor(findingVersion: string): string {
  return `"${findingVersion}"`;
}

interface ReviewSeen {
  _id: string;
  reviewedAt: string;
  reviewedBy: { _id: string; name: string } | null;
}

/**
 * What the form says after a 412, from the scan as loaded and as reloaded: who reviewed it and
 * when, or that a newer analysis finished; that the physician's review was not saved, that
 * their choices are still in the form, and what to do.
 */
export function reviewConflictText(
  loaded: { review: ReviewSeen | null },
  now: { review: ReviewSeen | null },
  me: { _id: string } | null,
  formatDateTime: (iso: string) => string,
): string {
  const kept = 'Your review was not saved; what you chose and typed is still in the form below. Check it against the finding shown now, then save again.';
  const review = now.review;
  if (review && review._id !== loaded.review?._id) {
    const who = review.reviewedBy === null ? 'A former user' : review.reviewedBy._id === me?._id ? 'You (in another window or tab)' : review.reviewedBy.name;
    return `${who} reviewed this finding at ${formatDateTime(review.reviewedAt)}, after you opened it: their review is shown above. ${kept}`;
  }
  return `The finding changed after you opened this scan (a newer analysis finished): it is shown above. ${kept}`;
}
