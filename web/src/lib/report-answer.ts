/** What the viewer says of the answer to "Generate report". Pure, tested under node. */

/**
 * POST /api/scans/{id}/report answers 201 with a new report, or 200 with the latest stored one
 * when nothing it would print has changed (src/scans/report.ts). A doctor who asks again must be
 * told that the PDF is the earlier report, not a fresh one: the sentence for a 200, null for a 201.
 * The server's message dates the earlier report in ISO time; `formatTime` dates it as the app does.
 */
export function unchangedReportNotice(status: number, message: string, formatTime: (iso: string) => string): string | null {
  if (status !== 200) return null;
  const at = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z/.exec(message)?.[0];
  const when = at ? ` on ${formatTime(at)}` : '';
  return `Nothing has changed since the report generated${when}: that report is returned, no new one was made.`;
}
