import { useState } from 'react';
import { api, errorMessage, ok, type User } from '../api/client';
import { useAuth } from '../auth';
import { Alert, PageHeader } from '../components/ui';
import { ApiError } from '../lib/api-errors';
import { formatDateTime } from '../lib/format';
import { useDocumentTitle, useFormAction } from '../lib/hooks';
import { useAsync } from '../lib/useAsync';

export function AdminUsers() {
  const { user: me } = useAuth();
  const users = useAsync(() => ok(api.GET('/api/users/users')), []);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);

  useDocumentTitle('Users');

  /** Shows the change at once (a switch that lags feels broken) and undoes it if refused. */
  async function change(u: User, body: { role?: 'admin' | 'doctor'; isActive?: boolean }) {
    setError(null);
    setDone(null);
    users.setData((old) => (old ?? []).map((x) => (x._id === u._id ? { ...x, ...body } : x)));
    try {
      const updated = await ok(api.PATCH('/api/users/users/{id}', { params: { path: { id: u._id } }, body }));
      users.setData((old) => (old ?? []).map((x) => (x._id === u._id ? updated : x)));
    } catch (err) {
      users.setData((old) => (old ?? []).map((x) => (x._id === u._id ? u : x)));
      setError(errorMessage(err));
    }
  }

  /** A person told at sign-in to "ask an administrator to unlock your account" is unlocked here. */
  async function unlock(u: User) {
    setError(null);
    setDone(null);
    try {
      await ok(api.POST('/api/users/users/{id}/unlock', { params: { path: { id: u._id } } }));
      setDone(`Sign-in of ${u.name} is unlocked: their failed sign-ins are forgotten and they can sign in now.`);
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  return (
    <section>
      <PageHeader title="Users" subtitle="Who may sign in, and with which role. Deactivated users cannot sign in.">
        <button type="button" className="btn btn-primary" onClick={() => setCreating((c) => !c)} aria-expanded={creating}>
          New user
        </button>
      </PageHeader>
      {creating && (
        <NewUserForm
          onCreated={(u) => {
            users.setData((old) => [...(old ?? []), u]);
            setCreating(false);
          }}
        />
      )}
      {(error ?? users.error) && <Alert>{error ?? users.error}</Alert>}
      {done && <Alert kind="success">{done}</Alert>}
      <div className="card table-card">
        <table className="table stacked">
          <caption className="sr-only">Users</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Email</th>
              <th scope="col">Specialization</th>
              <th scope="col">Role</th>
              <th scope="col">Active</th>
              <th scope="col">Sign-in</th>
            </tr>
          </thead>
          <tbody>
            {(users.data ?? []).map((u) => (
              <tr key={u._id}>
                <td className="strong">{u.name}</td>
                <td className="wide" data-label="Email">{u.email}</td>
                <td className="wide" data-label="Specialization">{u.specialization ?? '—'}</td>
                <td data-label="Role">
                  <select
                    aria-label={`Role of ${u.name}`}
                    value={u.role}
                    disabled={u._id === me?._id}
                    onChange={(e) => void change(u, { role: e.target.value as 'admin' | 'doctor' })}
                  >
                    <option value="doctor">Doctor</option>
                    <option value="admin">Administrator</option>
                  </select>
                </td>
                <td data-label="Active">
                  <label className="switch">
                    <input
                      type="checkbox"
                      checked={u.isActive}
                      disabled={u._id === me?._id}
                      onChange={(e) => void change(u, { isActive: e.target.checked })}
                    />
                    <span>{u.isActive ? 'Active' : 'Inactive'}</span>
                    <span className="sr-only"> account of {u.name}</span>
                  </label>
                </td>
                <td data-label="Sign-in">
                  <button
                    type="button"
                    className="btn btn-secondary btn-small"
                    aria-label={`Unlock sign-in of ${u.name}`}
                    title="Lifts a lock after too many failed sign-ins (not a network address's)"
                    onClick={() => void unlock(u)}
                  >
                    Unlock
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <AddressLocks />
    </section>
  );
}

/**
 * Network addresses locked after too many failed sign-ins. Everyone behind a locked address (a
 * ward behind one NAT address) is told to "ask an administrator to lift the lock on this
 * address": unlocking their accounts does not, lifting it here does.
 */
function AddressLocks() {
  const locks = useAsync(() => ok(api.GET('/api/users/ip-locks')), []);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);

  async function lift(ip: string) {
    setError(null);
    setDone(null);
    try {
      await ok(api.POST('/api/users/ip-locks/{ip}/unlock', { params: { path: { ip } } }));
      locks.setData((old) => (old ?? []).filter((l) => l.ip !== ip));
      setDone(`The lock on ${ip} is lifted: sign-ins from it are accepted again.`);
    } catch (err) {
      // The lock ended meanwhile (its time ran out, or another administrator lifted it): the
      // address is open, which is what was asked; the server's 404 words are for API clients.
      if (err instanceof ApiError && err.status === 404) {
        locks.setData((old) => (old ?? []).filter((l) => l.ip !== ip));
        setDone(`The lock on ${ip} had already ended: sign-ins from it are accepted.`);
      } else setError(errorMessage(err));
    }
  }

  return (
    <section className="card table-card" aria-labelledby="locks-h">
      <div className="card-head">
        <h2 id="locks-h">Locked network addresses</h2>
        <button type="button" className="btn btn-secondary btn-small" onClick={locks.reload}>
          Refresh
        </button>
      </div>
      <p className="muted small card-text">
        An address is locked for a while after many failed sign-ins from it, for everyone who signs in from it. Lifting the lock does not unlock an
        account.
      </p>
      {(error ?? locks.error) && <Alert>{error ?? locks.error}</Alert>}
      {done && <Alert kind="success">{done}</Alert>}
      {locks.data && locks.data.length === 0 ? (
        <p className="empty">No network address is locked now.</p>
      ) : (
        <table className="table stacked">
          <caption className="sr-only">Locked network addresses</caption>
          <thead>
            <tr>
              <th scope="col">Address</th>
              <th scope="col" className="num">
                Failed sign-ins
              </th>
              <th scope="col">Locked until</th>
              <th scope="col">
                <span className="sr-only">Action</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {(locks.data ?? []).map((l) => (
              <tr key={l.ip}>
                <td className="mono">{l.ip}</td>
                <td className="num" data-label="Failed sign-ins">{l.failures}</td>
                <td data-label="Locked until">{formatDateTime(l.lockedUntil)}</td>
                <td>
                  <button type="button" className="btn btn-secondary btn-small" aria-label={`Lift the lock on ${l.ip}`} onClick={() => void lift(l.ip)}>
                    Lift lock
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function NewUserForm({ onCreated }: { onCreated: (u: User) => void }) {
  const [f, setF] = useState({ name: '', email: '', password: '', role: 'doctor', specialization: '' });
  const { onSubmit, busy, error } = useFormAction(async () => {
    const created = await ok(
      api.POST('/api/users/users', {
        body: {
          name: f.name.trim(),
          email: f.email.trim(),
          password: f.password,
          role: f.role as 'doctor',
          ...(f.specialization.trim() ? { specialization: f.specialization.trim() } : {}),
        },
      }),
    );
    onCreated(created);
  });
  return (
    <form className="card form" onSubmit={onSubmit} aria-labelledby="new-user-h">
      <h2 id="new-user-h">New user</h2>
      {error && <Alert>{error}</Alert>}
      <div className="grid-3">
        <div className="field">
          <label htmlFor="nu-name">Full name</label>
          <input id="nu-name" required value={f.name} onChange={(e) => setF({ ...f, name: e.target.value })} />
        </div>
        <div className="field">
          <label htmlFor="nu-email">Email</label>
          <input id="nu-email" type="email" required value={f.email} onChange={(e) => setF({ ...f, email: e.target.value })} />
        </div>
        <div className="field">
          <label htmlFor="nu-password">Initial password</label>
          <input
            id="nu-password"
            type="password"
            autoComplete="new-password"
            required
            minLength={8}
            value={f.password}
            onChange={(e) => setF({ ...f, password: e.target.value })}
          />
        </div>
        <div className="field">
          <label htmlFor="nu-role">Role</label>
          <select id="nu-role" value={f.role} onChange={(e) => setF({ ...f, role: e.target.value })}>
            <option value="doctor">Doctor</option>
            <option value="admin">Administrator</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="nu-spec">Specialization</label>
          <input id="nu-spec" value={f.specialization} onChange={(e) => setF({ ...f, specialization: e.target.value })} />
        </div>
      </div>
      <button type="submit" className="btn btn-primary" disabled={busy || !f.name || !f.email || f.password.length < 8}>
        Create user
      </button>
    </form>
  );
}
