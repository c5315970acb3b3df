import { and, asc, desc, eq, inArray, sql, type SQL, type SQLWrapper } from 'drizzle-orm';
import { patientVisibleTo, type PatientRow, type Viewer } from '../access/index.js';
import type { DbOrTx } from '../platform/db/index.js';
import { medicalHistory, patientDoctors, patientNotes, patients, scans, users } from '../platform/db/schema.js';

export type { PatientRow };
export type NewPatientRow = typeof patients.$inferInsert;

export async function findPatientByPatientId(db: DbOrTx, patientId: string): Promise<PatientRow | null> {
  const [row] = await db.select().from(patients).where(eq(patients.patientId, patientId));
  return row ?? null;
}

export interface PatientListFilter {
  page: number;
  limit: number;
  status?: 'active' | 'inactive' | 'archived';
  search?: string;
}

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => '\\' + c);
}

/**
 * Letters with diacritics and their lower-case base letter (É -> e, ñ -> n, ễ -> e, ά -> α), so a
 * search for "jose" finds "José" and "nunez" finds "Ñúñez": a doctor types a name as the keyboard
 * at hand allows. Worked out once from Unicode's decompositions (NFD) for the Latin, Latin
 * Extended and Greek blocks, and applied alike to the search term here and to the stored names
 * by translate() in SQL (built in; the unaccent extension is not in every PostgreSQL install, and
 * PGlite would have to load it). The search is a substring scan either way (LIKE '%...%').
 */
const FOLDS = (() => {
  const map = new Map<string, string>();
  for (const [from, to] of [[0xc0, 0x24f], [0x370, 0x3ff], [0x1e00, 0x1eff]] as const) {
    for (let cp = from; cp <= to; cp++) {
      const ch = String.fromCodePoint(cp);
      const base = ch.normalize('NFD').replace(/\p{M}/gu, '');
      if (base.length === 1 && base !== ch && /\p{L}/u.test(base)) map.set(ch, base.toLowerCase());
    }
  }
  return { map, from: [...map.keys()].join(''), to: [...map.values()].join('') };
})();

/** The search term as translate(lower(...), FOLDS.from, FOLDS.to) leaves a stored name. */
function folded(s: string): string {
  return [...s.toLowerCase()].map((c) => FOLDS.map.get(c) ?? c).join('');
}

export async function listVisiblePatients(
  db: DbOrTx,
  viewer: Viewer,
  filter: PatientListFilter,
): Promise<{ rows: PatientRow[]; total: number }> {
  const conditions: (SQL | undefined)[] = [patientVisibleTo(viewer, patients.id)];
  if (filter.status) conditions.push(eq(patients.status, filter.status));
  if (filter.search) {
    const pattern = `%${escapeLike(folded(filter.search.trim()))}%`;
    const fold = (column: SQLWrapper) => sql`translate(lower(${column}), ${FOLDS.from}, ${FOLDS.to})`;
    conditions.push(sql`(${fold(patients.name)} like ${pattern} or ${fold(patients.patientId)} like ${pattern})`);
  }
  const where = and(...conditions);
  const [count] = await db.select({ n: sql<number>`count(*)::int` }).from(patients).where(where);
  const rows = await db
    .select()
    .from(patients)
    .where(where)
    .orderBy(desc(patients.createdAt), asc(patients.id))
    .limit(filter.limit)
    .offset((filter.page - 1) * filter.limit);
  return { rows, total: count?.n ?? 0 };
}

export async function insertPatient(db: DbOrTx, values: NewPatientRow): Promise<PatientRow> {
  const [row] = await db.insert(patients).values(values).returning();
  return row!;
}

export async function updatePatientRow(db: DbOrTx, id: string, values: Partial<NewPatientRow>): Promise<PatientRow> {
  const [row] = await db
    .update(patients)
    .set({ ...values, updatedAt: new Date() })
    .where(eq(patients.id, id))
    .returning();
  return row!;
}

export async function deletePatientRow(db: DbOrTx, id: string): Promise<void> {
  await db.delete(patients).where(eq(patients.id, id));
}

export async function assignDoctor(db: DbOrTx, patientId: string, doctorId: string): Promise<void> {
  await db.insert(patientDoctors).values({ patientId, doctorId }).onConflictDoNothing();
}

/** Removes one assignment; returns whether there was one. */
export async function unassignDoctor(db: DbOrTx, patientId: string, doctorId: string): Promise<boolean> {
  const rows = await db
    .delete(patientDoctors)
    .where(and(eq(patientDoctors.patientId, patientId), eq(patientDoctors.doctorId, doctorId)))
    .returning({ doctorId: patientDoctors.doctorId });
  return rows.length === 1;
}

/** Locks the patient row: assignment changes of one patient run one after another. */
export async function lockPatient(db: DbOrTx, id: string): Promise<void> {
  await db.select({ id: patients.id }).from(patients).where(eq(patients.id, id)).for('update');
}

export async function assignedDoctors(
  db: DbOrTx,
  patientIds: string[],
): Promise<Map<string, { _id: string; name: string }[]>> {
  const out = new Map<string, { _id: string; name: string }[]>();
  if (patientIds.length === 0) return out;
  const rows = await db
    .select({ patientId: patientDoctors.patientId, id: users.id, name: users.name })
    .from(patientDoctors)
    .innerJoin(users, eq(users.id, patientDoctors.doctorId))
    .where(inArray(patientDoctors.patientId, patientIds))
    .orderBy(asc(patientDoctors.assignedAt), asc(users.id));
  for (const r of rows) {
    const list = out.get(r.patientId) ?? [];
    list.push({ _id: r.id, name: r.name });
    out.set(r.patientId, list);
  }
  return out;
}

export async function historyOf(db: DbOrTx, patientId: string) {
  return db
    .select()
    .from(medicalHistory)
    .where(eq(medicalHistory.patientId, patientId))
    .orderBy(asc(medicalHistory.date), asc(medicalHistory.createdAt));
}

export async function insertHistory(db: DbOrTx, values: typeof medicalHistory.$inferInsert) {
  await db.insert(medicalHistory).values(values);
}

export async function notesOf(db: DbOrTx, patientId: string) {
  return db
    .select({
      id: patientNotes.id,
      content: patientNotes.content,
      createdAt: patientNotes.createdAt,
      authorId: patientNotes.createdBy,
      authorName: users.name,
    })
    .from(patientNotes)
    .leftJoin(users, eq(users.id, patientNotes.createdBy))
    .where(eq(patientNotes.patientId, patientId))
    .orderBy(asc(patientNotes.createdAt), asc(patientNotes.id));
}

export async function insertNote(db: DbOrTx, values: typeof patientNotes.$inferInsert) {
  await db.insert(patientNotes).values(values);
}

export async function scansOf(db: DbOrTx, patientId: string) {
  return db
    .select({ id: scans.id, scanDate: scans.scanDate, status: scans.status, scanType: scans.scanType })
    .from(scans)
    .where(eq(scans.patientId, patientId))
    .orderBy(desc(scans.scanDate), asc(scans.id));
}

/** Ids of a patient's scans: each scan keeps its files under its own storage prefix. */
export async function scanIdsOf(db: DbOrTx, patientId: string): Promise<string[]> {
  const rows = await db.select({ id: scans.id }).from(scans).where(eq(scans.patientId, patientId));
  return rows.map((r) => r.id);
}
