// The viewer's sentence for the answer to "Generate report" (web/src/lib/report-answer.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { unchangedReportNotice } from '../../web/src/lib/report-answer.js';

test('a report asked for again with nothing changed (200) is said to be the earlier one, dated as the app dates; a new one (201) needs no word', () => {
  const at = '2026-12-07T10:14:06.123Z';
  const message = `Nothing has changed since the report generated at ${at}; that report is returned`;
  const dated: string[] = [];
  const formatTime = (iso: string) => {
    dated.push(iso);
    return '7 Dec 2026, 10:14';
  };
  assert.equal(
    unchangedReportNotice(200, message, formatTime),
    'Nothing has changed since the report generated on 7 Dec 2026, 10:14: that report is returned, no new one was made.',
  );
  assert.deepEqual(dated, [at], 'the earlier report is dated by the app, not in ISO time');
  // A message without a time still says it.
  assert.equal(unchangedReportNotice(200, 'unchanged', formatTime), 'Nothing has changed since the report generated: that report is returned, no new one was made.');
  assert.equal(unchangedReportNotice(201, 'Report generated successfully', formatTime), null);
});
