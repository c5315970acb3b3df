-- Every change to a user row (role, deactivation, token version, deletion) notifies the API
-- processes, which evict that user from their short per-process cache (src/auth/user-cache.ts).
-- NOTIFY is delivered when the transaction commits, and never when it rolls back.
CREATE OR REPLACE FUNCTION imagemedix_users_changed() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('imagemedix_users', COALESCE(NEW.id, OLD.id)::text);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
DROP TRIGGER IF EXISTS users_changed_notify ON users;
--> statement-breakpoint
CREATE TRIGGER users_changed_notify AFTER UPDATE OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION imagemedix_users_changed();
