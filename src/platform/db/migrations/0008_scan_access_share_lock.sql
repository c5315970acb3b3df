-- New scans take their patients' rows FOR SHARE instead of FOR NO KEY UPDATE (0007): still
-- enough to wait for, and be waited on by, an assignment change (which takes FOR NO KEY
-- UPDATE), but two uploads for the same patient no longer queue behind each other until commit:
-- the instances of one DICOM study arrive together, all for one patient.
CREATE OR REPLACE FUNCTION imagemedix_scan_access_new_scans() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM patients WHERE id IN (SELECT DISTINCT patient_id FROM new_scans) ORDER BY id FOR SHARE;
  INSERT INTO scan_access (scan_id, doctor_id, scan_date)
    SELECT s.id, pd.doctor_id, s.scan_date FROM new_scans s JOIN patient_doctors pd ON pd.patient_id = s.patient_id
    ON CONFLICT DO NOTHING;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
