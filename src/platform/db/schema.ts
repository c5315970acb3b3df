/**
 * The database schema. Migrations in ./migrations are generated from this file with
 * `npm run db:generate` and applied at start-up, identically on PGlite and PostgreSQL.
 */
import { sql } from 'drizzle-orm';
import {
  boolean,
  customType,
  date,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import type { HeatmapMap, HotRegion } from '../../ml/heatmap.js';
import type { Finding, ReviewedFinding, ScanType } from '../../scan-types/index.js';

const id = () => uuid('id').primaryKey().defaultRandom();
const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();
const updatedAt = () => timestamp('updated_at', { withTimezone: true }).notNull().defaultNow();

export const users = pgTable(
  'users',
  {
    id: id(),
    name: text('name').notNull(),
    email: text('email').notNull(),
    passwordHash: text('password_hash'),
    role: text('role', { enum: ['doctor', 'admin'] }).notNull().default('doctor'),
    specialization: text('specialization'),
    isActive: boolean('is_active').notNull().default(true),
    googleSubject: text('google_subject'),
    /**
     * Carried in every token; bumped on a password change, deactivation, role change and
     * logout, which ends every session issued before.
     */
    tokenVersion: integer('token_version').notNull().default(0),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    // Emails are unique regardless of case: "A@x.org" and "a@x.org" are one person.
    uniqueIndex('users_email_lower_key').on(sql`lower(${t.email})`),
    uniqueIndex('users_google_subject_key').on(t.googleSubject),
  ],
);

export interface PatientContact {
  email?: string;
  phone?: string;
  address?: string;
}

export const patients = pgTable(
  'patients',
  {
    id: id(),
    patientId: text('patient_id').notNull(),
    name: text('name').notNull(),
    dateOfBirth: date('date_of_birth', { mode: 'string' }),
    gender: text('gender'),
    contact: jsonb('contact').$type<PatientContact>().notNull().default({}),
    status: text('status', { enum: ['active', 'inactive', 'archived'] }).notNull().default('active'),
    lastVisit: timestamp('last_visit', { withTimezone: true }),
    nextAppointment: timestamp('next_appointment', { withTimezone: true }),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('patients_patient_id_key').on(t.patientId),
    index('patients_status_idx').on(t.status),
    index('patients_name_lower_idx').on(sql`lower(${t.name})`),
  ],
);

export const patientDoctors = pgTable(
  'patient_doctors',
  {
    patientId: uuid('patient_id')
      .notNull()
      .references(() => patients.id, { onDelete: 'cascade' }),
    doctorId: uuid('doctor_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    assignedAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.patientId, t.doctorId] }), index('patient_doctors_doctor_idx').on(t.doctorId)],
);

/**
 * Which doctor may see which scan, one row per scan and assigned doctor: the rule of access/
 * (a doctor sees the scans of the patients assigned to them) laid out by doctor and date, so a
 * doctor's list page is a walk of one index however many patients the doctor has. Kept by
 * triggers (migrations 0007, 0009) in the same transaction as every change of scans or assignments;
 * the list is the only reader, and its page still checks the assignment itself.
 */
export const scanAccess = pgTable(
  'scan_access',
  {
    scanId: uuid('scan_id')
      .notNull()
      .references(() => scans.id, { onDelete: 'cascade' }),
    doctorId: uuid('doctor_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    scanDate: timestamp('scan_date', { withTimezone: true }).notNull(),
    /** The scan's status and type (migration 0009), so a doctor's list filtered by them reads no scan it then drops. */
    status: text('status', { enum: ['pending', 'processing', 'completed', 'failed'] }).notNull(),
    scanType: text('scan_type').$type<ScanType>(),
  },
  (t) => [
    primaryKey({ columns: [t.scanId, t.doctorId] }),
    index('scan_access_doctor_date_idx').on(t.doctorId, t.scanDate.desc().nullsFirst(), t.scanId.desc().nullsFirst()),
    index('scan_access_doctor_status_date_idx').on(t.doctorId, t.status, t.scanDate.desc().nullsFirst(), t.scanId.desc().nullsFirst()),
    index('scan_access_doctor_type_date_idx').on(t.doctorId, t.scanType, t.scanDate.desc().nullsFirst(), t.scanId.desc().nullsFirst()),
  ],
);

export const medicalHistory = pgTable(
  'medical_history',
  {
    id: id(),
    patientId: uuid('patient_id')
      .notNull()
      .references(() => patients.id, { onDelete: 'cascade' }),
    condition: text('condition').notNull(),
    diagnosis: text('diagnosis'),
    treatment: text('treatment'),
    date: timestamp('date', { withTimezone: true }).notNull().defaultNow(),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [index('medical_history_patient_idx').on(t.patientId, t.date)],
);

export const patientNotes = pgTable(
  'patient_notes',
  {
    id: id(),
    patientId: uuid('patient_id')
      .notNull()
      .references(() => patients.id, { onDelete: 'cascade' }),
    content: text('content').notNull(),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [index('patient_notes_patient_idx').on(t.patientId, t.createdAt)],
);

export type ScanStatus = 'pending' | 'processing' | 'completed' | 'failed';

export const scans = pgTable(
  'scans',
  {
    id: id(),
    patientId: uuid('patient_id')
      .notNull()
      .references(() => patients.id, { onDelete: 'cascade' }),
    /** The doctor responsible for the scan: the uploader. */
    doctorId: uuid('doctor_id').references(() => users.id, { onDelete: 'set null' }),
    scanDate: timestamp('scan_date', { withTimezone: true }).notNull(),
    scanType: text('scan_type').$type<ScanType>(),
    status: text('status', { enum: ['pending', 'processing', 'completed', 'failed'] }).notNull(),
    originalFormat: text('original_format', { enum: ['jpeg', 'png', 'dicom'] }).notNull(),
    originalKey: text('original_key').notNull(),
    imageKey: text('image_key').notNull(),
    thumbnailKey: text('thumbnail_key').notNull(),
    width: integer('width').notNull(),
    height: integer('height').notNull(),
    fileSize: integer('file_size').notNull(),
    sha256: text('sha256').notNull(),
    dicom: jsonb('dicom').$type<Record<string, unknown>>(),
    studyInstanceUid: text('study_instance_uid'),
    seriesInstanceUid: text('series_instance_uid'),
    sopInstanceUid: text('sop_instance_uid'),
    /** The analysis whose output is current; earlier analyses stay in `analyses` as history. */
    currentAnalysisId: uuid('current_analysis_id'),
    failureReason: text('failure_reason'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('scans_patient_date_idx').on(t.patientId, t.scanDate),
    index('scans_status_date_idx').on(t.status, t.scanDate),
    index('scans_date_idx').on(t.scanDate),
    index('scans_doctor_idx').on(t.doctorId),
    index('scans_sop_uid_idx').on(t.sopInstanceUid),
  ],
);

/** PostgreSQL's bytea, read and written as a Buffer (pg) or Uint8Array (PGlite, made a Buffer by its reader). */
const bytea = customType<{ data: Buffer; driverData: Buffer | Uint8Array }>({
  dataType: () => 'bytea',
});

/**
 * A small upload's original file, kept in the database beside its scan's row instead of a file
 * of its own (ORIGINALS_IN_DATABASE_MAX_KB, src/scans/originals.ts): written in the upload's own
 * statement, so the row and its bytes commit together with one durable write, and removed with
 * the scan (on delete cascade). The scan's original_key then starts with `database/`.
 */
export const scanOriginals = pgTable('scan_originals', {
  scanId: uuid('scan_id')
    .primaryKey()
    .references(() => scans.id, { onDelete: 'cascade' }),
  bytes: bytea('bytes').notNull(),
});

// The shapes of the analyses' heatmap_map and hot_region columns, as the model code makes them.
export type { HeatmapMap, HotRegion };

export const analyses = pgTable(
  'analyses',
  {
    id: id(),
    scanId: uuid('scan_id')
      .notNull()
      .references(() => scans.id, { onDelete: 'cascade' }),
    jobId: text('job_id'),
    /** Null while the type is still to be decided from the image (an upload without scanType). */
    scanType: text('scan_type').$type<ScanType>(),
    status: text('status', { enum: ['queued', 'active', 'completed', 'failed'] }).notNull().default('queued'),
    /** Stage and percent written by the worker as it goes (decode, preprocess, inference...). */
    stage: text('stage'),
    progress: integer('progress').notNull().default(0),
    /**
     * Which try of the job owns the row. A worker that stalled past the job's expiry may wake
     * up while the retry runs; its writes are fenced off by this number.
     */
    attempt: integer('attempt').notNull().default(0),
    startedAt: timestamp('started_at', { withTimezone: true }),
    modelId: text('model_id'),
    modelVersion: text('model_version'),
    /** The model's output exactly as produced; a doctor's review never overwrites it. */
    result: jsonb('result').$type<Finding>(),
    /**
     * Where the heatmap PNG is (or, for an analysis with a map, will be once first read).
     * Analyses before migration 0011 stored the PNG there and have no map.
     */
    heatmapKey: text('heatmap_key'),
    /** The map the heatmap PNG is drawn from on its first read (src/scans/heatmaps.ts). */
    heatmapMap: jsonb('heatmap_map').$type<HeatmapMap>(),
    hotRegion: jsonb('hot_region').$type<HotRegion>(),
    refusalReason: text('refusal_reason'),
    error: text('error'),
    durationMs: integer('duration_ms'),
    requestedBy: uuid('requested_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    completedAt: timestamp('completed_at', { withTimezone: true }),
  },
  (t) => [index('analyses_scan_idx').on(t.scanId, t.createdAt), index('analyses_job_idx').on(t.jobId)],
);

export const scanReviews = pgTable(
  'scan_reviews',
  {
    id: id(),
    scanId: uuid('scan_id')
      .notNull()
      .references(() => scans.id, { onDelete: 'cascade' }),
    analysisId: uuid('analysis_id').references(() => analyses.id, { onDelete: 'set null' }),
    status: text('status').notNull(),
    result: jsonb('result').$type<ReviewedFinding>().notNull(),
    reviewedBy: uuid('reviewed_by').references(() => users.id, { onDelete: 'set null' }),
    reviewedAt: createdAt(),
  },
  (t) => [index('scan_reviews_scan_idx').on(t.scanId, t.reviewedAt)],
);

export const annotations = pgTable(
  'annotations',
  {
    id: id(),
    scanId: uuid('scan_id')
      .notNull()
      .references(() => scans.id, { onDelete: 'cascade' }),
    x: doublePrecision('x').notNull(),
    y: doublePrecision('y').notNull(),
    text: text('text').notNull(),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [index('annotations_scan_idx').on(t.scanId, t.createdAt)],
);

export const reports = pgTable(
  'reports',
  {
    id: id(),
    scanId: uuid('scan_id')
      .notNull()
      .references(() => scans.id, { onDelete: 'cascade' }),
    storageKey: text('storage_key').notNull(),
    /**
     * Digest of what the report prints (all but its time) and of the renderer's code: a request
     * that would print the same report gets the stored one. Null on reports made before it.
     */
    fingerprint: text('fingerprint'),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [index('reports_scan_idx').on(t.scanId, t.createdAt)],
);

export const webhooks = pgTable(
  'webhooks',
  {
    id: id(),
    ownerId: uuid('owner_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    url: text('url').notNull(),
    events: text('events').array().notNull(),
    description: text('description'),
    secret: text('secret').notNull(),
    isActive: boolean('is_active').notNull().default(true),
    createdAt: createdAt(),
  },
  (t) => [index('webhooks_owner_idx').on(t.ownerId)],
);

export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: id(),
    webhookId: uuid('webhook_id')
      .notNull()
      .references(() => webhooks.id, { onDelete: 'cascade' }),
    /** The Standard Webhooks message id: the same for every attempt of one event. */
    messageId: text('message_id').notNull(),
    eventType: text('event_type').notNull(),
    attempt: integer('attempt').notNull(),
    statusCode: integer('status_code'),
    durationMs: integer('duration_ms'),
    error: text('error'),
    succeeded: boolean('succeeded').notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('webhook_deliveries_webhook_idx').on(t.webhookId, t.createdAt)],
);

/**
 * Failed sign-ins per account and per client address, shared by every API process. Keys are
 * SHA-256 digests ("account:<email>", "ip:<address>"), so the table never holds what someone
 * typed into the email field.
 */
export const loginThrottle = pgTable('login_throttle', {
  key: text('key').primaryKey(),
  failures: integer('failures').notNull(),
  windowStartedAt: timestamp('window_started_at', { withTimezone: true }).notNull(),
  lockedUntil: timestamp('locked_until', { withTimezone: true }),
  /** The client address of a per-address row, so an admin can see and lift its lock; null for accounts (their key is a digest: no typed email is stored). */
  ip: text('ip'),
});

export type AuditOutcome = 'success' | 'denied' | 'not_found' | 'invalid' | 'throttled' | 'error';

/**
 * The audit trail: who did what to which record, when, from where, and how it ended. Append
 * only: a trigger (migration 0002) refuses UPDATE, DELETE and TRUNCATE. No foreign keys, so
 * deleting a patient or scan never touches its history. Holds ids and field names, never
 * values, images, passwords or tokens.
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    actorId: uuid('actor_id'),
    actorRole: text('actor_role'),
    action: text('action').notNull(),
    resourceType: text('resource_type').notNull(),
    resourceId: text('resource_id'),
    /** Every patient whose data the event touched (one for a record, several for a list). */
    patientIds: uuid('patient_ids').array().notNull().default(sql`'{}'::uuid[]`),
    ip: text('ip'),
    outcome: text('outcome', { enum: ['success', 'denied', 'not_found', 'invalid', 'throttled', 'error'] }).notNull(),
    statusCode: integer('status_code'),
    detail: jsonb('detail').$type<Record<string, unknown>>(),
  },
  (t) => [
    index('audit_events_at_idx').on(t.at),
    index('audit_events_actor_idx').on(t.actorId, t.at),
    index('audit_events_action_idx').on(t.action, t.at),
    index('audit_events_patients_idx').using('gin', t.patientIds),
  ],
);
