import { Link } from 'react-router-dom';
import { PageHeader } from '../components/ui';
import { useDocumentTitle } from '../lib/hooks';

export function NotFound() {
  useDocumentTitle('Page not found');
  return (
    <section className="card narrow">
      <PageHeader title="Page not found" subtitle="There is nothing here, or it is not yours to see." />
      <Link to="/">Back to the worklist</Link>
    </section>
  );
}
