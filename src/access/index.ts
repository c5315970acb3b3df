/**
 * Who may see what: ImageMedix's access rules live here (src/access/index.ts) and nowhere else.
 *
 * - A patient, and everything of theirs (scans, analyses, reports, files), is visible to every
 *   admin and to the doctors assigned to them (patient_doctors).
 * - A webhook is managed by its owner and by admins; it only receives events about patients
 *   its owner may see.
 * - "Not yours" answers exactly like "not there" (404), so ids cannot be probed.
 *
 * Services start with one of the `require...` helpers; listings filter with `patientVisibleTo`.
 */
import { and, eq, or, sql, type SQL, type SQLWrapper } from 'drizzle-orm';
import { builtOncePerDb, preparedPerDb, type DbOrTx } from '../platform/db/index.js';
import { patientDoctors, patients, scans, webhooks, type users } from '../platform/db/schema.js';
import { forbidden, notFound } from '../platform/errors.js';
import { isUuid } from '../platform/ids.js';

/** The user a request acts for. */
export interface Viewer {
  id: string;
  role: 'doctor' | 'admin';
}

export type PatientRow = typeof patients.$inferSelect;
export type ScanRow = typeof scans.$inferSelect;
export type WebhookRow = typeof webhooks.$inferSelect;

/** The patient fields a scan is shown with. */
const scanPatientColumns = {
  id: patients.id,
  patientId: patients.patientId,
  name: patients.name,
  dateOfBirth: patients.dateOfBirth,
  gender: patients.gender,
};

export interface ScanPatient {
  id: string;
  patientId: string;
  name: string;
  dateOfBirth: string | null;
  gender: string | null;
}

export interface ScanWithPatient {
  scan: ScanRow;
  patient: ScanPatient;
}

/**
 * The doctor is assigned to the patient. Written as `patient in (the doctor's patients)` so the
 * planner starts from the doctor's few assignments (patient_doctors_doctor_idx).
 */
function assigned(patientId: SQLWrapper | string, doctorId: SQLWrapper | string): SQL {
  return sql`${patientId} in (select ${patientDoctors.patientId} from ${patientDoctors} where ${patientDoctors.doctorId} = ${doctorId})`;
}

/**
 * Filter on a patient id column: the rows the viewer may see (no filter for an admin). The
 * viewer's id may be a placeholder, for a statement prepared once and run for every doctor.
 */
export function patientVisibleTo(viewer: { id: string | SQLWrapper; role: Viewer['role'] }, patientId: SQLWrapper): SQL | undefined {
  return viewer.role === 'admin' ? undefined : assigned(patientId, viewer.id);
}

/** The same rule for a user known only by columns (a webhook's owner at delivery time). */
export function userMaySeePatient(user: { role: typeof users.role; id: SQLWrapper }, patientId: string | SQLWrapper): SQL<boolean> {
  return sql<boolean>`(${user.role} = 'admin' or ${assigned(patientId, user.id)})`;
}

/** A patient by `_id` or by `patientId` (the hospital's identifier), if the viewer may see it. */
export async function findVisiblePatient(db: DbOrTx, viewer: Viewer, idOrPatientId: string): Promise<PatientRow | null> {
  const match = isUuid(idOrPatientId)
    ? or(eq(patients.id, idOrPatientId), eq(patients.patientId, idOrPatientId))
    : eq(patients.patientId, idOrPatientId);
  const [row] = await db
    .select()
    .from(patients)
    .where(and(match, patientVisibleTo(viewer, patients.id)));
  return row ?? null;
}

export async function requireVisiblePatient(db: DbOrTx, viewer: Viewer, idOrPatientId: string): Promise<PatientRow> {
  const patient = await findVisiblePatient(db, viewer, idOrPatientId);
  if (!patient) throw notFound('Patient');
  return patient;
}

/** By role, and by whether the id may be a patient's `_id` (a UUID) or only a hospital patientId. */
const patientForScans = (role: Viewer['role'], byUuid: boolean) =>
  builtOncePerDb(`patient_for_scans_${role}${byUuid ? '_uuid' : ''}`, (db) =>
    db
      .select({
        patient: patients,
        mayAddScans: role === 'admin' ? sql<boolean>`true` : sql<boolean>`${assigned(patients.id, sql.placeholder('viewerId'))}`,
      })
      .from(patients)
      .where(
        byUuid
          ? or(sql`${patients.id} = ${sql.placeholder('id')}`, sql`${patients.patientId} = ${sql.placeholder('id')}`)
          : sql`${patients.patientId} = ${sql.placeholder('id')}`,
      ),
  );
const patientForScansStatements = {
  admin: [patientForScans('admin', false), patientForScans('admin', true)],
  doctor: [patientForScans('doctor', false), patientForScans('doctor', true)],
} as const;

/**
 * A patient by `_id` or hospital identifier, whether or not the viewer may see it, with
 * whether they may add scans to it (the same rule as seeing it), in one query: an upload asks
 * both, and "someone else's" answers differently from "no such patient" there (the caller
 * maps it to the answer a patient creation would give). Built once: it runs in every upload's
 * transaction.
 */
export async function findPatientForScans(
  db: DbOrTx,
  viewer: Viewer,
  idOrPatientId: string,
): Promise<{ patient: PatientRow; mayAddScans: boolean } | null> {
  const statement = patientForScansStatements[viewer.role][isUuid(idOrPatientId) ? 1 : 0](db);
  const [row] = await statement.execute({ id: idOrPatientId, viewerId: viewer.id });
  return row ?? null;
}

const visibleScan = (role: Viewer['role']) =>
  preparedPerDb((db) =>
    db
      .select({ scan: scans, patient: scanPatientColumns })
      .from(scans)
      .innerJoin(patients, eq(patients.id, scans.patientId))
      .where(and(sql`${scans.id} = ${sql.placeholder('scanId')}`, patientVisibleTo({ role, id: sql.placeholder('viewerId') }, scans.patientId)))
      .prepare(`visible_scan_${role}`),
  );
const visibleScanStatements = { admin: visibleScan('admin'), doctor: visibleScan('doctor') };

/** A scan with its patient, or 404 when it does not exist or the viewer may not see it. */
export async function requireVisibleScan(db: DbOrTx, viewer: Viewer, scanId: string): Promise<ScanWithPatient> {
  const [row] = isUuid(scanId) ? await visibleScanStatements[viewer.role](db).execute({ scanId, viewerId: viewer.id }) : [];
  if (!row) throw notFound('Scan');
  return row;
}

/** Filter on webhooks: admins manage every webhook, a doctor their own. */
export function webhooksManageableBy(viewer: Viewer): SQL | undefined {
  return viewer.role === 'admin' ? undefined : eq(webhooks.ownerId, viewer.id);
}

export async function requireManageableWebhook(db: DbOrTx, viewer: Viewer, webhookId: string): Promise<WebhookRow> {
  const [row] = isUuid(webhookId)
    ? await db
        .select()
        .from(webhooks)
        .where(and(eq(webhooks.id, webhookId), webhooksManageableBy(viewer)))
    : [];
  if (!row) throw notFound('Webhook');
  return row;
}

/** Actions reserved to administrators (deleting records, assigning doctors) answer 403. */
export function requireAdmin(viewer: Viewer, message: string): void {
  if (viewer.role !== 'admin') throw forbidden(message);
}
