CREATE TABLE "scan_access" (
	"scan_id" uuid NOT NULL,
	"doctor_id" uuid NOT NULL,
	"scan_date" timestamp with time zone NOT NULL,
	CONSTRAINT "scan_access_scan_id_doctor_id_pk" PRIMARY KEY("scan_id","doctor_id")
);
--> statement-breakpoint
ALTER TABLE "scan_access" ADD CONSTRAINT "scan_access_scan_id_scans_id_fk" FOREIGN KEY ("scan_id") REFERENCES "public"."scans"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "scan_access" ADD CONSTRAINT "scan_access_doctor_id_users_id_fk" FOREIGN KEY ("doctor_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "scan_access_doctor_date_idx" ON "scan_access" USING btree ("doctor_id","scan_date" DESC NULLS FIRST,"scan_id" DESC NULLS FIRST);--> statement-breakpoint
-- scan_access is kept by the triggers below, in the transaction of every change it follows:
-- new scans, a scan moved to another patient or date, and assignments made or removed
-- (deletions of scans, users and patients cascade). Each trigger first locks the rows of the
-- patients concerned (FOR NO KEY UPDATE), so a scan added while its patient's assignments
-- change waits for that change to commit and then reads the assignments afresh: neither side
-- can miss the other. Statement-level triggers (transition tables) keep bulk inserts cheap.
CREATE OR REPLACE FUNCTION imagemedix_scan_access_new_scans() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM patients WHERE id IN (SELECT DISTINCT patient_id FROM new_scans) ORDER BY id FOR NO KEY UPDATE;
  INSERT INTO scan_access (scan_id, doctor_id, scan_date)
    SELECT s.id, pd.doctor_id, s.scan_date FROM new_scans s JOIN patient_doctors pd ON pd.patient_id = s.patient_id
    ON CONFLICT DO NOTHING;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER scans_access_insert AFTER INSERT ON scans REFERENCING NEW TABLE AS new_scans
  FOR EACH STATEMENT EXECUTE FUNCTION imagemedix_scan_access_new_scans();
--> statement-breakpoint
CREATE OR REPLACE FUNCTION imagemedix_scan_access_moved_scan() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM patients WHERE id IN (OLD.patient_id, NEW.patient_id) ORDER BY id FOR NO KEY UPDATE;
  DELETE FROM scan_access WHERE scan_id = NEW.id;
  INSERT INTO scan_access (scan_id, doctor_id, scan_date)
    SELECT NEW.id, pd.doctor_id, NEW.scan_date FROM patient_doctors pd WHERE pd.patient_id = NEW.patient_id
    ON CONFLICT DO NOTHING;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER scans_access_update AFTER UPDATE OF patient_id, scan_date ON scans
  FOR EACH ROW WHEN (OLD.patient_id IS DISTINCT FROM NEW.patient_id OR OLD.scan_date IS DISTINCT FROM NEW.scan_date)
  EXECUTE FUNCTION imagemedix_scan_access_moved_scan();
--> statement-breakpoint
CREATE OR REPLACE FUNCTION imagemedix_scan_access_assigned() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM patients WHERE id IN (SELECT DISTINCT patient_id FROM assigned) ORDER BY id FOR NO KEY UPDATE;
  INSERT INTO scan_access (scan_id, doctor_id, scan_date)
    SELECT s.id, a.doctor_id, s.scan_date FROM assigned a JOIN scans s ON s.patient_id = a.patient_id
    ON CONFLICT DO NOTHING;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER patient_doctors_access_insert AFTER INSERT ON patient_doctors REFERENCING NEW TABLE AS assigned
  FOR EACH STATEMENT EXECUTE FUNCTION imagemedix_scan_access_assigned();
--> statement-breakpoint
CREATE OR REPLACE FUNCTION imagemedix_scan_access_unassigned() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM patients WHERE id IN (SELECT DISTINCT patient_id FROM unassigned) ORDER BY id FOR NO KEY UPDATE;
  DELETE FROM scan_access sa USING unassigned u, scans s
    WHERE s.patient_id = u.patient_id AND sa.scan_id = s.id AND sa.doctor_id = u.doctor_id;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER patient_doctors_access_delete AFTER DELETE ON patient_doctors REFERENCING OLD TABLE AS unassigned
  FOR EACH STATEMENT EXECUTE FUNCTION imagemedix_scan_access_unassigned();
--> statement-breakpoint
-- An existing database: every scan with each of its patient's doctors.
INSERT INTO scan_access (scan_id, doctor_id, scan_date)
  SELECT s.id, pd.doctor_id, s.scan_date FROM scans s JOIN patient_doctors pd ON pd.patient_id = s.patient_id;
