/**
 * Text a client sends when it meant to send nothing: JavaScript's `undefined`, `null` or `NaN`
 * and an object turned into text by a form library or a template, Python's `None`. Taken as a
 * patientId, every upload carrying it, whoever the patient, would be filed under one record
 * named after the bug (an exploratory client created patient "undefined" this way); taken as a
 * name, a patient would be called "undefined". Identifiers are compared without case (no
 * hospital issues "NULL" as a record number); names exactly, since Null is a real surname.
 */
const PLACEHOLDER_IDS = new Set(['undefined', 'null', 'nan', 'none', 'nil', '[object object]']);
const PLACEHOLDER_NAMES = new Set(['undefined', 'null', 'NaN', 'None', '[object Object]']);

/** Why `value` cannot be the patient's identifier or name; null when it may be. */
export function placeholderProblem(field: 'patientId' | 'patientName' | 'name', value: string): string | null {
  const trimmed = value.trim();
  const placeholder = field === 'patientId' ? PLACEHOLDER_IDS.has(trimmed.toLowerCase()) : PLACEHOLDER_NAMES.has(trimmed);
  if (!placeholder) return null;
  return (
    `${field} "${trimmed}" is what a program sends when the value is missing, not a patient's ` +
    `${field === 'patientId' ? 'identifier' : 'name'}: send the one on the patient's record ` +
    `(every record sent with "${trimmed}" would otherwise be filed under one patient)`
  );
}
