-- scan_access carries each scan's status and type, so a doctor's list filtered by them walks
-- an index of the doctor's matching scans instead of probing every scan of the doctor (2,000
-- heap probes for status=failed on a 1,000,000-scan database). The rows are written afresh
-- (the same rule as 0007's fill) and its key and indexes built after them: an UPDATE of every row left
-- as many dead rows, which the new indexes took in too (twice their size on 1,000,000 rows).
TRUNCATE "scan_access";--> statement-breakpoint
DROP INDEX "scan_access_doctor_date_idx";--> statement-breakpoint
ALTER TABLE "scan_access" DROP CONSTRAINT "scan_access_scan_id_doctor_id_pk";--> statement-breakpoint
ALTER TABLE "scan_access" ADD COLUMN "status" text NOT NULL;--> statement-breakpoint
ALTER TABLE "scan_access" ADD COLUMN "scan_type" text;--> statement-breakpoint
INSERT INTO scan_access (scan_id, doctor_id, scan_date, status, scan_type)
  SELECT s.id, pd.doctor_id, s.scan_date, s.status, s.scan_type FROM scans s JOIN patient_doctors pd ON pd.patient_id = s.patient_id;--> statement-breakpoint
ALTER TABLE "scan_access" ADD CONSTRAINT "scan_access_scan_id_doctor_id_pk" PRIMARY KEY("scan_id","doctor_id");--> statement-breakpoint
CREATE INDEX "scan_access_doctor_date_idx" ON "scan_access" USING btree ("doctor_id","scan_date" DESC NULLS FIRST,"scan_id" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "scan_access_doctor_status_date_idx" ON "scan_access" USING btree ("doctor_id","status","scan_date" DESC NULLS FIRST,"scan_id" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "scan_access_doctor_type_date_idx" ON "scan_access" USING btree ("doctor_id","scan_type","scan_date" DESC NULLS FIRST,"scan_id" DESC NULLS FIRST);--> statement-breakpoint
-- The triggers of 0007/0008 copy status and type wherever they copy scan_date.
CREATE OR REPLACE FUNCTION imagemedix_scan_access_new_scans() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM patients WHERE id IN (SELECT DISTINCT patient_id FROM new_scans) ORDER BY id FOR SHARE;
  INSERT INTO scan_access (scan_id, doctor_id, scan_date, status, scan_type)
    SELECT s.id, pd.doctor_id, s.scan_date, s.status, s.scan_type FROM new_scans s JOIN patient_doctors pd ON pd.patient_id = s.patient_id
    ON CONFLICT DO NOTHING;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION imagemedix_scan_access_moved_scan() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM patients WHERE id IN (OLD.patient_id, NEW.patient_id) ORDER BY id FOR NO KEY UPDATE;
  DELETE FROM scan_access WHERE scan_id = NEW.id;
  INSERT INTO scan_access (scan_id, doctor_id, scan_date, status, scan_type)
    SELECT NEW.id, pd.doctor_id, NEW.scan_date, NEW.status, NEW.scan_type FROM patient_doctors pd WHERE pd.patient_id = NEW.patient_id
    ON CONFLICT DO NOTHING;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION imagemedix_scan_access_assigned() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM patients WHERE id IN (SELECT DISTINCT patient_id FROM assigned) ORDER BY id FOR NO KEY UPDATE;
  INSERT INTO scan_access (scan_id, doctor_id, scan_date, status, scan_type)
    SELECT s.id, a.doctor_id, s.scan_date, s.status, s.scan_type FROM assigned a JOIN scans s ON s.patient_id = a.patient_id
    ON CONFLICT DO NOTHING;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
-- A scan's new status or type (an analysis taken or ended, a type decided from the image). It
-- takes the patient's row FOR SHARE first, as a new scan does (0008): an assignment being made
-- meanwhile (FOR NO KEY UPDATE) copied the scan's old status; waiting for it to commit lets
-- this UPDATE see and correct its rows, and an assignment that comes second waits for this
-- change and copies the new status. Two status changes of one patient do not wait for each other.
CREATE OR REPLACE FUNCTION imagemedix_scan_access_scan_state() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM patients WHERE id = NEW.patient_id FOR SHARE;
  UPDATE scan_access SET status = NEW.status, scan_type = NEW.scan_type WHERE scan_id = NEW.id;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER scans_access_state AFTER UPDATE OF status, scan_type ON scans
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.scan_type IS DISTINCT FROM NEW.scan_type)
  EXECUTE FUNCTION imagemedix_scan_access_scan_state();
