-- Every statement that changes a table a list page reads notifies the API processes, which drop
-- the list pages they keep (src/platform/db/server-writes.ts, src/platform/db/read-cache.ts).
-- Statement-level: one call per statement, however many rows; the notifications of a
-- transaction are delivered once, when it commits, and never when it rolls back.
CREATE OR REPLACE FUNCTION imagemedix_reads_changed() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('imagemedix_reads', '');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
DROP TRIGGER IF EXISTS scans_reads_changed ON scans;
--> statement-breakpoint
CREATE TRIGGER scans_reads_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON scans
  FOR EACH STATEMENT EXECUTE FUNCTION imagemedix_reads_changed();
--> statement-breakpoint
DROP TRIGGER IF EXISTS analyses_reads_changed ON analyses;
--> statement-breakpoint
CREATE TRIGGER analyses_reads_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON analyses
  FOR EACH STATEMENT EXECUTE FUNCTION imagemedix_reads_changed();
--> statement-breakpoint
DROP TRIGGER IF EXISTS scan_reviews_reads_changed ON scan_reviews;
--> statement-breakpoint
CREATE TRIGGER scan_reviews_reads_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON scan_reviews
  FOR EACH STATEMENT EXECUTE FUNCTION imagemedix_reads_changed();
--> statement-breakpoint
DROP TRIGGER IF EXISTS patients_reads_changed ON patients;
--> statement-breakpoint
CREATE TRIGGER patients_reads_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON patients
  FOR EACH STATEMENT EXECUTE FUNCTION imagemedix_reads_changed();
--> statement-breakpoint
DROP TRIGGER IF EXISTS patient_doctors_reads_changed ON patient_doctors;
--> statement-breakpoint
CREATE TRIGGER patient_doctors_reads_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON patient_doctors
  FOR EACH STATEMENT EXECUTE FUNCTION imagemedix_reads_changed();
--> statement-breakpoint
DROP TRIGGER IF EXISTS scan_access_reads_changed ON scan_access;
--> statement-breakpoint
CREATE TRIGGER scan_access_reads_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON scan_access
  FOR EACH STATEMENT EXECUTE FUNCTION imagemedix_reads_changed();
--> statement-breakpoint
DROP TRIGGER IF EXISTS users_reads_changed ON users;
--> statement-breakpoint
CREATE TRIGGER users_reads_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION imagemedix_reads_changed();
