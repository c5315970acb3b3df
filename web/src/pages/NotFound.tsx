import { Link } from 'react-router-dom';
import { PageHeader } from '../components/ui';

export function NotFound() {
  return (
    <section className="card narrow">
      <PageHeader title="Page not found" subtitle="There is nothing here, or it is not yours to see." />
      <Link to="/">Back to the worklist</Link>
    </section>
  );
}
