import { useEffect, type ReactNode } from 'react';
import { Navigate, Route, Routes, useLocation } from 'react-router-dom';
import { AuthProvider, useAuth } from './auth';
import { Layout } from './components/Layout';
import { AdminUsers } from './pages/AdminUsers';
import { AdminWebhooks } from './pages/AdminWebhooks';
import { Login } from './pages/Login';
import { NotFound } from './pages/NotFound';
import { PatientPage } from './pages/PatientPage';
import { Patients } from './pages/Patients';
import { ScanViewer } from './pages/ScanViewer';
import { Upload } from './pages/Upload';
import { Worklist } from './pages/Worklist';

function RequireAuth({ children, admin = false }: { children: ReactNode; admin?: boolean }) {
  const { user, checking, signedOut } = useAuth();
  const location = useLocation();
  if (checking) return <p className="page-loading" role="status">Loading…</p>;
  if (!user) return <Navigate to={signedOut ? '/login' : `/login?next=${encodeURIComponent(location.pathname + location.search)}`} replace />;
  if (admin && user.role !== 'admin') return <NotFound />;
  return <>{children}</>;
}

/** Moves focus to the page heading on navigation, so screen readers announce the new page. */
function FocusOnNavigate() {
  const location = useLocation();
  useEffect(() => {
    const heading = document.querySelector<HTMLElement>('main h1');
    heading?.focus({ preventScroll: false });
  }, [location.pathname]);
  return null;
}

export function App() {
  return (
    <AuthProvider>
      <FocusOnNavigate />
      <Routes>
        <Route path="/login" element={<Login />} />
        <Route
          element={
            <RequireAuth>
              <Layout />
            </RequireAuth>
          }
        >
          <Route index element={<Worklist />} />
          <Route path="upload" element={<Upload />} />
          <Route path="scans/:id" element={<ScanViewer />} />
          <Route path="patients" element={<Patients />} />
          <Route path="patients/:id" element={<PatientPage />} />
          <Route
            path="admin/users"
            element={
              <RequireAuth admin>
                <AdminUsers />
              </RequireAuth>
            }
          />
          <Route
            path="admin/webhooks"
            element={
              <RequireAuth admin>
                <AdminWebhooks />
              </RequireAuth>
            }
          />
          <Route path="*" element={<NotFound />} />
        </Route>
      </Routes>
    </AuthProvider>
  );
}
