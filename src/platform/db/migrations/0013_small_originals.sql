CREATE TABLE "scan_originals" (
	"scan_id" uuid PRIMARY KEY NOT NULL,
	"bytes" "bytea" NOT NULL
);
--> statement-breakpoint
ALTER TABLE "scan_originals" ADD CONSTRAINT "scan_originals_scan_id_scans_id_fk" FOREIGN KEY ("scan_id") REFERENCES "public"."scans"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- Out of line and as received, like a file: no compression attempt in the upload's commit.
ALTER TABLE "scan_originals" ALTER COLUMN "bytes" SET STORAGE EXTERNAL;
