import { useState } from 'react';
import { Link, useNavigate } from 'react-router-dom';
import { api, ok } from '../api/client';
import { Alert, Empty, GenderSelect, PageHeader, Pagination } from '../components/ui';
import { formatDate } from '../lib/format';
import { useDebouncedFilter, useDocumentTitle, useFormAction, useUrlFilters } from '../lib/hooks';
import { useAsync } from '../lib/useAsync';

const PAGE_SIZE = 10;
type PatientStatus = 'active' | 'inactive' | 'archived';

export function Patients() {
  const filters = useUrlFilters();
  const navigate = useNavigate();
  const { page } = filters;
  const search = filters.get('search');
  const status = filters.get('status') as PatientStatus | '';
  const [input, setInput] = useDebouncedFilter(filters, 'search');
  const [creating, setCreating] = useState(false);
  useDocumentTitle('Patients');

  const list = useAsync(
    () =>
      ok(
        api.GET('/api/patients/', {
          params: { query: { page, limit: PAGE_SIZE, ...(search ? { search } : {}), ...(status ? { status } : {}) } },
        }),
      ),
    [page, search, status],
  );

  return (
    <section>
      <PageHeader title="Patients" subtitle="Patients assigned to you (all patients for administrators).">
        <button type="button" className="btn btn-primary" onClick={() => setCreating((c) => !c)} aria-expanded={creating}>
          New patient
        </button>
      </PageHeader>
      {creating && <NewPatientForm onCreated={(id) => navigate(`/patients/${id}`)} onCancel={() => setCreating(false)} />}
      <form className="filters card" role="search" aria-label="Find patients" onSubmit={(e) => e.preventDefault()}>
        <div className="field grow">
          <label htmlFor="p-search">Search by name or patient ID</label>
          <input id="p-search" type="search" value={input} onChange={(e) => setInput(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="p-status">Status</label>
          <select
            id="p-status"
            value={status}
            onChange={(e) => filters.set('status', e.target.value)}
          >
            <option value="">All</option>
            <option value="active">Active</option>
            <option value="inactive">Inactive</option>
            <option value="archived">Archived</option>
          </select>
        </div>
      </form>
      {list.error && <Alert>{list.error}</Alert>}
      <div className="card table-card">
        <table className="table stacked" aria-busy={list.loading}>
          <caption className="sr-only">Patients</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Patient ID</th>
              <th scope="col">Date of birth</th>
              <th scope="col">Gender</th>
              <th scope="col">Status</th>
              <th scope="col">Doctors</th>
            </tr>
          </thead>
          <tbody>
            {(list.data?.patients ?? []).map((p) => (
              <tr key={p._id} className="clickable" onClick={() => navigate(`/patients/${p._id}`)}>
                <td>
                  <Link to={`/patients/${p._id}`} className="row-link" onClick={(e) => e.stopPropagation()}>
                    {p.name}
                  </Link>
                </td>
                {/* Across the card on a phone: an ID is not cut at half its width. */}
                <td className="wide" data-label="Patient ID">
                  <span className="patient-id" title={p.patientId}>
                    {p.patientId}
                  </span>
                </td>
                <td data-label="Date of birth">{formatDate(p.dateOfBirth)}</td>
                <td className="capitalize" data-label="Gender">{p.gender ?? '—'}</td>
                <td data-label="Status">
                  <span className={`badge badge-${p.status}`}>{p.status}</span>
                </td>
                <td data-label="Doctors">{p.assignedDoctors.map((d) => d.name).join(', ') || '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {list.data && list.data.patients.length === 0 && <Empty>{search ? `No patient matches “${search}”.` : 'No patients yet.'}</Empty>}
      </div>
      {list.data && (
        <Pagination
          page={page}
          totalPages={list.data.totalPages}
          total={list.data.totalPatients}
          noun="patients"
          onPage={filters.setPage}
        />
      )}
    </section>
  );
}

function NewPatientForm({ onCreated, onCancel }: { onCreated: (id: string) => void; onCancel: () => void }) {
  const [f, setF] = useState({ patientId: '', name: '', dateOfBirth: '', gender: '', email: '', phone: '' });
  const { onSubmit, busy, error } = useFormAction(async () => {
    const contact = { ...(f.email ? { email: f.email } : {}), ...(f.phone ? { phone: f.phone } : {}) };
    const created = await ok(
      api.POST('/api/patients/', {
        body: {
          patientId: f.patientId.trim(),
          name: f.name.trim(),
          ...(f.dateOfBirth ? { dateOfBirth: f.dateOfBirth } : {}),
          ...(f.gender ? { gender: f.gender as 'female' } : {}),
          ...(Object.keys(contact).length ? { contact } : {}),
        },
      }),
    );
    onCreated(created._id);
  });
  const field = (key: keyof typeof f, label: string, type = 'text', required = false) => (
    <div className="field">
      <label htmlFor={`new-${key}`}>{label}</label>
      <input id={`new-${key}`} type={type} required={required} value={f[key]} onChange={(e) => setF({ ...f, [key]: e.target.value })} />
    </div>
  );
  return (
    <form className="card form" onSubmit={onSubmit} aria-labelledby="new-patient-h">
      <h2 id="new-patient-h">New patient</h2>
      {error && <Alert>{error}</Alert>}
      <div className="grid-3">
        {field('patientId', 'Patient ID', 'text', true)}
        {field('name', 'Full name', 'text', true)}
        {field('dateOfBirth', 'Date of birth', 'date')}
        <div className="field">
          <label htmlFor="new-gender">Gender</label>
          <GenderSelect id="new-gender" value={f.gender} onChange={(gender) => setF({ ...f, gender })} />
        </div>
        {field('email', 'Email', 'email')}
        {field('phone', 'Phone', 'tel')}
      </div>
      <div className="row-actions">
        <button type="submit" className="btn btn-primary" disabled={busy || !f.patientId.trim() || !f.name.trim()}>
          Create patient
        </button>
        <button type="button" className="btn btn-secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
