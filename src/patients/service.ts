/**
 * Patient rules. Every function starts with the access check: a doctor reaches only the
 * patients assigned to them, an admin reaches all, and "not yours" answers exactly like
 * "not there" (404) so patient ids cannot be probed.
 */
import type { BaseLogger } from 'pino';
import { requireAdmin, requireVisiblePatient, type PatientRow, type Viewer } from '../access/index.js';
import type { Db, DbOrTx } from '../platform/db/index.js';
import type { PatientContact } from '../platform/db/schema.js';
import { badRequest, conflict, notFound } from '../platform/errors.js';
import { MAX_YEAR, MIN_YEAR, yearInRange } from '../platform/http/schemas.js';
import { isUuid } from '../platform/ids.js';
import { isUniqueViolation } from '../platform/db/errors.js';
import { placeholderProblem } from './placeholders.js';
import type { Storage } from '../platform/storage/index.js';
import { removeScanFiles } from '../scans/stored-files.js';
import { storedFilesOf } from '../scans/repository.js';
import { findUserById } from '../users/repository.js';
import * as repo from './repository.js';
import type { CreatePatientBody, UpdatePatientBody } from './schemas.js';

const iso = (d: Date | null) => (d ? d.toISOString() : null);
const dateOnlyIso = (d: string | null) => (d ? `${d}T00:00:00.000Z` : null);

/** "1992-08-22" or an ISO timestamp -> "1992-08-22", refusing impossible and future dates. */
function parseCalendarDate(value: string, field: string): string {
  const day = value.slice(0, 10);
  const d = new Date(`${day}T00:00:00.000Z`);
  if (Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== day) {
    throw badRequest(`${field} is not a real calendar date: "${value}"`);
  }
  if (!yearInRange(d)) throw badRequest(`${field} must be between ${MIN_YEAR} and today`);
  if (d.getTime() > Date.now()) throw badRequest(`${field} cannot be in the future`);
  return day;
}

/** How far ahead of the server's clock a past moment may be sent: the client's clock may run fast. */
const CLOCK_SKEW_MS = 5 * 60_000;

function parseTimestamp(value: string | null | undefined, field: string, { past = false } = {}): Date | null | undefined {
  if (value === undefined || value === null) return value;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw badRequest(`${field} must be an ISO 8601 date-time`);
  if (!yearInRange(d)) throw badRequest(`${field} must be between the years ${MIN_YEAR} and ${MAX_YEAR}`);
  if (past && d.getTime() > Date.now() + CLOCK_SKEW_MS) {
    throw badRequest(`${field} cannot be in the future: it is a visit that took place (an appointment to come is nextAppointment)`);
  }
  return d;
}

function core(p: PatientRow) {
  return {
    _id: p.id,
    patientId: p.patientId,
    name: p.name,
    dateOfBirth: dateOnlyIso(p.dateOfBirth),
    gender: p.gender,
    contact: p.contact,
    status: p.status,
    lastVisit: iso(p.lastVisit),
    nextAppointment: iso(p.nextAppointment),
    createdAt: p.createdAt.toISOString(),
    updatedAt: p.updatedAt.toISOString(),
  };
}

function historyView(rows: Awaited<ReturnType<typeof repo.historyOf>>) {
  return rows.map((h) => ({
    _id: h.id,
    condition: h.condition,
    diagnosis: h.diagnosis,
    treatment: h.treatment,
    date: h.date.toISOString(),
  }));
}

export async function listPatients(
  db: Db,
  { viewer, filter }: { viewer: Viewer; filter: repo.PatientListFilter },
) {
  const { rows, total } = await repo.listVisiblePatients(db, viewer, filter);
  const doctors = await repo.assignedDoctors(
    db,
    rows.map((r) => r.id),
  );
  return {
    patients: rows.map((p) => ({ ...core(p), assignedDoctors: doctors.get(p.id) ?? [] })),
    currentPage: filter.page,
    totalPages: Math.ceil(total / filter.limit),
    totalPatients: total,
  };
}

/** What a patient's record is made of besides its row: doctors, history, notes and scans. */
function recordParts(db: Db, patientId: string) {
  return Promise.all([repo.assignedDoctors(db, [patientId]), repo.historyOf(db, patientId), repo.notesOf(db, patientId), repo.scansOf(db, patientId)]);
}

/**
 * The same parts read inside a transaction: one after another, since a transaction is one
 * connection, which runs one query at a time (pg warns that queueing them on a busy client is
 * deprecated, and a later pg refuses it).
 */
async function recordPartsInTransaction(tx: DbOrTx, patientId: string) {
  const doctors = await repo.assignedDoctors(tx, [patientId]);
  const history = await repo.historyOf(tx, patientId);
  const notes = await repo.notesOf(tx, patientId);
  const scans = await repo.scansOf(tx, patientId);
  return [doctors, history, notes, scans] as const;
}

export async function getPatient(db: Db, { viewer, id }: { viewer: Viewer; id: string }) {
  const p = await requireVisiblePatient(db, viewer, id);
  const [doctors, history, notes, scans] = await recordParts(db, p.id);
  return {
    ...core(p),
    assignedDoctors: doctors.get(p.id) ?? [],
    medicalHistory: historyView(history),
    scans: scans.map((s) => ({ _id: s.id, scanDate: s.scanDate.toISOString(), status: s.status, scanType: s.scanType })),
    notes: notes.map((n) => ({
      _id: n.id,
      content: n.content,
      createdBy: n.authorId ? { _id: n.authorId, name: n.authorName ?? '' } : null,
      createdAt: n.createdAt.toISOString(),
    })),
  };
}

/** The record as the API document shows it after create and update (doctors by id). */
async function patientRecord(tx: DbOrTx, p: PatientRow) {
  const [doctors, history, notes, scans] = await recordPartsInTransaction(tx, p.id);
  return {
    ...core(p),
    assignedDoctors: (doctors.get(p.id) ?? []).map((d) => d._id),
    medicalHistory: historyView(history),
    scans: scans.map((s) => ({ _id: s.id, scanDate: s.scanDate.toISOString(), status: s.status })),
    notes: notes.map((n) => ({ _id: n.id, content: n.content, createdBy: n.authorId, createdAt: n.createdAt.toISOString() })),
  };
}

/**
 * The rule for hospital ids (SECURITY.md): a patientId is unique at the site, so one already
 * in use is refused, to everyone, with this one answer, whether or not the caller may see
 * that patient. It tells that the identifier is taken, never whose it is: no name, no _id,
 * no difference between "yours" and "someone else's" (issue 12, item 2).
 */
export function patientIdInUse(patientId: string) {
  return conflict(
    `patientId ${patientId} is already in use at this site: if this is your patient, ask an administrator to assign them to you`,
  );
}
const duplicatePatientId = patientIdInUse;

/** Refuses a placeholder (`undefined`, `null`...) sent as the patient's identifier or name. */
function refusePlaceholders(input: { patientId?: string; name?: string }): void {
  for (const field of ['patientId', 'name'] as const) {
    const value = input[field];
    const problem = value === undefined ? null : placeholderProblem(field, value);
    if (problem) throw badRequest(problem);
  }
}

export async function createPatient(db: Db, { viewer, input }: { viewer: Viewer; input: CreatePatientBody }) {
  refusePlaceholders(input);
  try {
    return await db.transaction(async (tx) => {
      if (await repo.findPatientByPatientId(tx, input.patientId)) throw duplicatePatientId(input.patientId);
      const row = await repo.insertPatient(tx, {
        patientId: input.patientId,
        name: input.name.trim(),
        dateOfBirth: input.dateOfBirth ? parseCalendarDate(input.dateOfBirth, 'dateOfBirth') : null,
        gender: input.gender ?? null,
        contact: input.contact ?? {},
        status: input.status ?? 'active',
        lastVisit: parseTimestamp(input.lastVisit, 'lastVisit', { past: true }) ?? null,
        nextAppointment: parseTimestamp(input.nextAppointment, 'nextAppointment') ?? null,
        createdBy: viewer.id,
      });
      await repo.assignDoctor(tx, row.id, viewer.id);
      return patientRecord(tx, row);
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw duplicatePatientId(input.patientId);
    throw err;
  }
}

/** Creates a patient for an upload that names an unknown patientId (scans feature). */
export async function createPatientForUpload(
  tx: DbOrTx,
  { viewer, patientId, name }: { viewer: Viewer; patientId: string; name: string },
): Promise<PatientRow> {
  const row = await repo.insertPatient(tx, { patientId, name, createdBy: viewer.id });
  await repo.assignDoctor(tx, row.id, viewer.id);
  return row;
}

function mergeContact(current: PatientContact, patch: NonNullable<UpdatePatientBody['contact']>): PatientContact {
  const merged: Record<string, string> = { ...(current as Record<string, string>) };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else if (value !== undefined) merged[key] = value;
  }
  return merged;
}

export async function updatePatient(
  db: Db,
  { viewer, id, input }: { viewer: Viewer; id: string; input: UpdatePatientBody },
) {
  refusePlaceholders(input);
  try {
    return await db.transaction(async (tx) => {
      const p = await requireVisiblePatient(tx, viewer, id);
      const values: Partial<repo.NewPatientRow> = {};
      if (input.patientId !== undefined && input.patientId !== p.patientId) {
        if (await repo.findPatientByPatientId(tx, input.patientId)) throw duplicatePatientId(input.patientId);
        values.patientId = input.patientId;
      }
      if (input.name !== undefined) values.name = input.name.trim();
      if (input.dateOfBirth !== undefined) {
        values.dateOfBirth = input.dateOfBirth === null ? null : parseCalendarDate(input.dateOfBirth, 'dateOfBirth');
      }
      if (input.gender !== undefined) values.gender = input.gender;
      if (input.status !== undefined) values.status = input.status;
      if (input.contact !== undefined) values.contact = mergeContact(p.contact, input.contact);
      if (input.lastVisit !== undefined) values.lastVisit = parseTimestamp(input.lastVisit, 'lastVisit', { past: true });
      if (input.nextAppointment !== undefined) {
        values.nextAppointment = parseTimestamp(input.nextAppointment, 'nextAppointment');
      }
      const row = await repo.updatePatientRow(tx, p.id, values);
      return patientRecord(tx, row);
    });
  } catch (err) {
    if (isUniqueViolation(err) && input.patientId) throw duplicatePatientId(input.patientId);
    throw err;
  }
}

export async function addMedicalHistory(
  db: Db,
  {
    viewer,
    id,
    entry,
  }: { viewer: Viewer; id: string; entry: { condition: string; diagnosis?: string; treatment?: string; date?: string } },
) {
  const p = await requireVisiblePatient(db, viewer, id);
  await repo.insertHistory(db, {
    patientId: p.id,
    condition: entry.condition.trim(),
    diagnosis: entry.diagnosis ?? null,
    treatment: entry.treatment ?? null,
    date: entry.date ? new Date(`${parseCalendarDate(entry.date, 'date')}T00:00:00.000Z`) : new Date(),
    createdBy: viewer.id,
  });
  return { _id: p.id, medicalHistory: historyView(await repo.historyOf(db, p.id)) };
}

export async function addNote(db: Db, { viewer, id, content }: { viewer: Viewer; id: string; content: string }) {
  const p = await requireVisiblePatient(db, viewer, id);
  if (content.trim() === '') throw badRequest('content must not be blank');
  await repo.insertNote(db, { patientId: p.id, content, createdBy: viewer.id });
  const notes = await repo.notesOf(db, p.id);
  return {
    _id: p.id,
    notes: notes.map((n) => ({ _id: n.id, content: n.content, createdBy: n.authorId, createdAt: n.createdAt.toISOString() })),
  };
}

export async function assignDoctorToPatient(
  db: Db,
  { viewer, id, doctorId }: { viewer: Viewer; id: string; doctorId: string },
) {
  requireAdmin(viewer, 'Only administrators can assign doctors');
  const p = await requireVisiblePatient(db, viewer, id);
  const doctor = isUuid(doctorId) ? await findUserById(db, doctorId) : null;
  if (!doctor) throw notFound('Doctor');
  if (doctor.role !== 'doctor') throw badRequest('doctorId must name a user with the doctor role');
  if (!doctor.isActive) throw badRequest('This doctor account is deactivated: activate it before assigning patients');
  await repo.assignDoctor(db, p.id, doctor.id);
  const doctors = await repo.assignedDoctors(db, [p.id]);
  return { _id: p.id, assignedDoctors: (doctors.get(p.id) ?? []).map((d) => d._id) };
}

/**
 * Un-assigns a doctor (admin). A patient always keeps at least one assigned doctor, so someone
 * is responsible for them and their scans stay reachable by a doctor.
 */
export async function unassignDoctorFromPatient(
  db: Db,
  { viewer, id, doctorId }: { viewer: Viewer; id: string; doctorId: string },
) {
  requireAdmin(viewer, 'Only administrators can un-assign doctors');
  return db.transaction(async (tx) => {
    const p = await requireVisiblePatient(tx, viewer, id);
    await repo.lockPatient(tx, p.id);
    const before = (await repo.assignedDoctors(tx, [p.id])).get(p.id) ?? [];
    if (!isUuid(doctorId) || !before.some((d) => d._id === doctorId)) {
      throw notFound('Doctor assignment');
    }
    if (before.length === 1) {
      throw conflict("This is the patient's only assigned doctor: assign another doctor before removing this one");
    }
    await repo.unassignDoctor(tx, p.id, doctorId);
    return { _id: p.id, assignedDoctors: before.filter((d) => d._id !== doctorId).map((d) => d._id) };
  });
}

/** Deletes a patient and, by cascade, their scans; returns the record's id and the scan ids whose files to remove. */
/**
 * Deletes a patient with their scans (rows first, in one transaction; then the stored files).
 * Returns what the audit trail records.
 */
export async function deletePatient(
  db: Db,
  { viewer, id, storage, log }: { viewer: Viewer; id: string; storage: Storage; log: Pick<BaseLogger, 'error'> },
): Promise<{ id: string; scanIds: string[] }> {
  requireAdmin(viewer, 'Only administrators can delete patients');
  const deleted = await db.transaction(async (tx) => {
    const p = await requireVisiblePatient(tx, viewer, id);
    const scanIds = await repo.scanIdsOf(tx, p.id);
    const files = await storedFilesOf(tx, scanIds);
    await repo.deletePatientRow(tx, p.id);
    return { id: p.id, scanIds, files };
  });
  await removeScanFiles(storage, deleted.files, log);
  return { id: deleted.id, scanIds: deleted.scanIds };
}
