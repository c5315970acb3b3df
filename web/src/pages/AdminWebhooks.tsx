import { useEffect, useState } from 'react';
import { api, errorMessage, ok, type Delivery, type Webhook } from '../api/client';
import { Alert, Empty, PageHeader } from '../components/ui';
import { nextRefreshIn, retryState } from '../lib/delivery-state';
import { formatDateTime } from '../lib/format';
import { useDocumentTitle, useFormAction } from '../lib/hooks';
import { useAsync } from '../lib/useAsync';

const EVENTS = ['scan.uploaded', 'scan.analyzed', 'scan.failed'] as const;

export function AdminWebhooks() {
  const hooks = useAsync(() => ok(api.GET('/api/webhooks/')), []);
  const [selected, setSelected] = useState<string | null>(null);
  const [secret, setSecret] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  useDocumentTitle('Webhooks');

  async function remove(h: Webhook) {
    if (!window.confirm(`Delete the webhook to ${h.url}? Queued deliveries are dropped.`)) return;
    try {
      await ok(api.DELETE('/api/webhooks/{id}', { params: { path: { id: h._id } } }));
      hooks.reload();
      if (selected === h._id) setSelected(null);
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  return (
    <section>
      <PageHeader
        title="Webhooks"
        subtitle="Other systems (RIS, PACS, EHR) are told when scans are uploaded, analysed or fail. Deliveries are signed (Standard Webhooks) and retried with backoff."
      />
      <NewWebhookForm
        onCreated={(s) => {
          setSecret(s);
          hooks.reload();
        }}
      />
      {secret && (
        <Alert kind="success">
          Webhook created. Its signing secret is shown only now; store it in the receiving system: <code className="secret">{secret}</code>
        </Alert>
      )}
      {(error ?? hooks.error) && <Alert>{error ?? hooks.error}</Alert>}
      <div className="card table-card">
        <table className="table stacked">
          <caption className="sr-only">Webhooks</caption>
          <thead>
            <tr>
              <th scope="col">URL</th>
              <th scope="col">Events</th>
              <th scope="col">Description</th>
              <th scope="col">Created</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {(hooks.data?.webhooks ?? []).map((h) => (
              <tr key={h._id} className={selected === h._id ? 'selected' : ''}>
                <td className="mono">{h.url}</td>
                <td data-label="Events">{h.events.join(', ')}</td>
                <td data-label="Description">{h.description ?? '—'}</td>
                <td data-label="Created">{formatDateTime(h.createdAt)}</td>
                <td className="row-actions wide">
                  <button type="button" className="btn btn-secondary btn-small" onClick={() => setSelected(h._id)} aria-pressed={selected === h._id}>
                    Deliveries
                  </button>
                  <button type="button" className="btn btn-danger btn-small" onClick={() => void remove(h)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {hooks.data && hooks.data.webhooks.length === 0 && <Empty>No webhooks yet.</Empty>}
      </div>
      {selected && <Deliveries id={selected} />}
    </section>
  );
}

function Deliveries({ id }: { id: string }) {
  const list = useAsync(() => ok(api.GET('/api/webhooks/{id}/deliveries', { params: { path: { id }, query: { limit: 50 } } })), [id]);
  // While a retry is queued, read the log again once it is due, so its outcome appears by itself.
  useEffect(() => {
    const due = nextRefreshIn(list.data?.deliveries ?? [], Date.now());
    if (due === null) return;
    // (reload only bumps a counter, so the one of this render is as good as any.)
    const timer = setTimeout(list.reload, due);
    return () => clearTimeout(timer);
  }, [list.data]);
  return (
    <section className="card table-card" aria-labelledby="deliv-h">
      <div className="card-head">
        <h2 id="deliv-h">Delivery attempts</h2>
        <button type="button" className="btn btn-secondary btn-small" onClick={list.reload}>
          Refresh
        </button>
      </div>
      {list.error && <Alert>{list.error}</Alert>}
      <table className="table stacked">
        <caption className="sr-only">Delivery attempts, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Event</th>
            <th scope="col">Attempt</th>
            <th scope="col">Result</th>
            <th scope="col">HTTP status</th>
            <th scope="col" className="num">
              Duration
            </th>
            <th scope="col">Error</th>
            <th scope="col">Retry</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.deliveries ?? []).map((d) => (
            <tr key={d._id}>
              <td>{formatDateTime(d.createdAt)}</td>
              <td data-label="Event">{d.eventType}</td>
              <td data-label="Attempt">{d.attempt}</td>
              <td data-label="Result">
                <span className={`badge ${d.succeeded ? 'badge-completed' : 'badge-failed'}`}>{d.succeeded ? 'Delivered' : 'Failed'}</span>
              </td>
              <td data-label="HTTP status">{d.statusCode ?? '—'}</td>
              <td className="num" data-label="Duration">{d.durationMs != null ? `${d.durationMs} ms` : '—'}</td>
              <td className="small wide" data-label="Error">{d.error ?? ''}</td>
              <td className="wide" data-label="Retry">
                <RetryCell delivery={d} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {list.data && list.data.deliveries.length === 0 && <Empty>No delivery yet: events are sent as scans are uploaded and analysed.</Empty>}
    </section>
  );
}

/** The retry state of one attempt: the queue's next try, given up, or superseded by a later try. */
function RetryCell({ delivery }: { delivery: Delivery }) {
  const state = retryState(delivery, Date.now());
  switch (state.kind) {
    case 'delivered':
      return <>—</>;
    case 'gave-up':
      return <span className="badge badge-failed badge-sentence">Gave up after attempt {delivery.attempt}</span>;
    case 'scheduled':
      return (
        <span className="badge badge-processing badge-sentence">
          Next try at <time dateTime={delivery.nextRetryAt ?? undefined}>{new Date(state.at!).toLocaleTimeString()}</time>
        </span>
      );
    case 'due':
      return <span className="badge badge-processing badge-sentence">Retrying now</span>;
    case 'retried':
      return <span className="small">Retried</span>;
  }
}

function NewWebhookForm({ onCreated }: { onCreated: (secret: string) => void }) {
  const [url, setUrl] = useState('');
  const [description, setDescription] = useState('');
  const [events, setEvents] = useState<string[]>([...EVENTS]);
  const { onSubmit, busy, error } = useFormAction(async () => {
    const out = await ok(
      api.POST('/api/webhooks/', {
        body: { url: url.trim(), events: events as (typeof EVENTS)[number][], ...(description.trim() ? { description: description.trim() } : {}) },
      }),
    );
    setUrl('');
    setDescription('');
    onCreated(out.secret);
  });
  return (
    <form className="card form" onSubmit={onSubmit} aria-labelledby="new-hook-h">
      <h2 id="new-hook-h">New webhook</h2>
      {error && <Alert>{error}</Alert>}
      <div className="grid-2">
        <div className="field">
          <label htmlFor="wh-url">Receiver URL (https)</label>
          <input id="wh-url" type="url" required placeholder="https://ris.hospital.org/imagemedix" value={url} onChange={(e) => setUrl(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="wh-desc">Description</label>
          <input id="wh-desc" value={description} onChange={(e) => setDescription(e.target.value)} />
        </div>
      </div>
      <fieldset className="inline-checks">
        <legend>Events</legend>
        {EVENTS.map((ev) => (
          <label key={ev} className="check">
            <input
              type="checkbox"
              checked={events.includes(ev)}
              onChange={(e) => setEvents((old) => (e.target.checked ? [...old, ev] : old.filter((x) => x !== ev)))}
            />
            {ev}
          </label>
        ))}
      </fieldset>
      <button type="submit" className="btn btn-primary" disabled={busy || !url.trim() || events.length === 0}>
        Create webhook
      </button>
    </form>
  );
}
