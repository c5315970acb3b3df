/**
 * Bulk data for benchmarks: patients assigned to one doctor and scans spread over years, with
 * a completed analysis for each completed scan. Written as set-based SQL (generate_series), so
 * a million scans take a minute on PostgreSQL instead of an hour of single inserts. The rows
 * point at storage keys that do not exist: benchmarks read rows and links, never files.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../platform/db/index.js';

export interface SeedOptions {
  /** The doctor the patients are assigned to; with `doctorIds`, patient n goes to doctorIds[n mod D]. */
  doctorId: string;
  doctorIds?: string[];
  patients: number;
  scans: number;
  /** Prefix of the hospital patient ids, e.g. BENCH- gives BENCH-1, BENCH-2... */
  patientPrefix?: string;
  /** Rows per statement: big enough to be quick, small enough for PGlite's memory. */
  batch?: number;
  onProgress?(done: number): void;
}

export async function seedScans(db: Db, opts: SeedOptions): Promise<void> {
  const prefix = opts.patientPrefix ?? 'BENCH-';
  const batch = opts.batch ?? 100_000;
  await db.execute(sql`
    insert into patients (patient_id, name, created_by)
    select ${prefix} || g, 'Bench Patient ' || g, ${opts.doctorId}::uuid from generate_series(1, ${opts.patients}) g
    on conflict (patient_id) do nothing`);
  const doctors = opts.doctorIds && opts.doctorIds.length > 0 ? opts.doctorIds : [opts.doctorId];
  await db.execute(sql`
    insert into patient_doctors (patient_id, doctor_id)
    select p.id, (${`{${doctors.join(',')}}`}::uuid[])[(substr(p.patient_id, ${prefix.length + 1})::int % ${doctors.length}) + 1]
    from patients p where p.patient_id like ${`${prefix}%`}
    on conflict do nothing`);
  // Patients numbered 1..P in a temporary map, so scan i belongs to patient (i mod P) + 1.
  await db.execute(sql`create temporary table if not exists bench_patient_map (n int primary key, id uuid not null)`);
  await db.execute(sql`truncate bench_patient_map`);
  await db.execute(sql`
    insert into bench_patient_map (n, id)
    select substr(patient_id, ${prefix.length + 1})::int, id from patients where patient_id like ${`${prefix}%`}`);
  for (let start = 1; start <= opts.scans; start += batch) {
    const end = Math.min(opts.scans, start + batch - 1);
    await db.execute(sql`
      with new_scans as (
        insert into scans (patient_id, doctor_id, scan_date, scan_type, status, original_format,
                           original_key, image_key, thumbnail_key, width, height, file_size, sha256)
        select m.id, ${opts.doctorId}::uuid,
               now() - (g * interval '7 minutes'),
               case when g % 2 = 0 then 'brain-mri' else 'chest-xray' end,
               case abs(hashint4(g)) % 20 when 0 then 'failed' when 1 then 'processing' when 2 then 'processing' when 3 then 'pending' when 4 then 'pending' else 'completed' end,
               'png', 'bench/original.png', 'bench/image.png', 'bench/thumb.png', 512, 512, 10000, md5(g::text)
        from generate_series(${start}::int, ${end}::int) g
        join bench_patient_map m on m.n = (g % ${opts.patients}) + 1
        returning id, scan_type, status, created_at
      ), new_analyses as (
        insert into analyses (scan_id, scan_type, status, stage, progress, attempt, model_id, model_version,
                              result, duration_ms, created_at, started_at, completed_at)
        select id, scan_type, 'completed', 'saving', 100, 1,
               case when scan_type = 'brain-mri' then 'brain-mri' else 'chest-xray' end, '1.0.0',
               case when scan_type = 'brain-mri'
                 then '{"scanType": "brain-mri", "hasTumor": false, "tumorType": null, "confidence": 0.97}'::jsonb
                 else '{"scanType": "chest-xray", "hasPneumonia": false, "pneumoniaType": null, "confidence": 0.95}'::jsonb end,
               20, created_at, created_at, created_at
        from new_scans where status = 'completed'
        returning scan_id
      )
      select count(*) from new_analyses`);
    opts.onProgress?.(end);
  }
  // A data-modifying WITH's outer statement does not see the rows its own CTEs insert, so an
  // UPDATE inside the statement above would match no scan and leave every seeded scan without
  // its finding (lists and details then measured without one). Point them at their analyses here.
  await db.execute(sql`
    update scans s set current_analysis_id = a.id
    from analyses a, bench_patient_map m
    where a.scan_id = s.id and s.patient_id = m.id and s.current_analysis_id is null`);
  // A bulk load leaves the visibility map unset: without VACUUM every index-only scan
  // visits the heap, which no real, long-lived table does.
  await db.execute(sql`vacuum analyze patients`);
  await db.execute(sql`vacuum analyze patient_doctors`);
  await db.execute(sql`vacuum analyze scans`);
  await db.execute(sql`vacuum analyze analyses`);
}
