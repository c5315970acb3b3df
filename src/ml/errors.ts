/**
 * Errors of the ML layer. They say what went wrong in the model's terms; callers decide what
 * it means to them (the analysis job: failed for good, no retry). The HTTP layer never sees
 * them directly: analyses run in jobs, and the job records the message on the analysis.
 */

/** An analysis that cannot succeed however often it is retried. */
export class PermanentAnalysisError extends Error {
  override name = 'PermanentAnalysisError';
  constructor(
    readonly reason: 'model_unavailable' | 'unreadable_image',
    message: string,
  ) {
    super(message);
  }
}
