import { NavLink, Outlet } from 'react-router-dom';
import { useAuth } from '../auth';
import { hasDrafts } from '../lib/drafts';
import { Logo } from './Logo';

export function Layout() {
  const { user, signOut } = useAuth();
  const link = ({ isActive }: { isActive: boolean }) => (isActive ? 'nav-link active' : 'nav-link');
  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to main content
      </a>
      <header className="topbar">
        <NavLink to="/" className="brand" aria-label="ImageMedix worklist">
          <Logo />
          <span>ImageMedix</span>
        </NavLink>
        <nav aria-label="Main">
          <ul className="nav">
            <li>
              <NavLink to="/" end className={link}>
                Worklist
              </NavLink>
            </li>
            <li>
              <NavLink to="/upload" className={link}>
                Upload
              </NavLink>
            </li>
            <li>
              <NavLink to="/patients" className={link}>
                Patients
              </NavLink>
            </li>
            {user?.role === 'admin' && (
              <>
                <li>
                  <NavLink to="/admin/users" className={link}>
                    Users
                  </NavLink>
                </li>
                <li>
                  <NavLink to="/admin/webhooks" className={link}>
                    Webhooks
                  </NavLink>
                </li>
              </>
            )}
          </ul>
        </nav>
        <div className="user-menu">
          <span className="user-name">
            {user?.name}
            <span className="user-role">{user?.role === 'admin' ? 'Administrator' : (user?.specialization ?? 'Doctor')}</span>
          </span>
          <button
            type="button"
            className="btn btn-ghost-light"
            onClick={() => {
              // Signing out forgets the drafts (the next user must not find them): ask first.
              if (hasDrafts() && !window.confirm('Text you typed is not saved yet (notes, an annotation, a history entry). Sign out and discard it?')) return;
              signOut();
            }}
          >
            Sign out
          </button>
        </div>
      </header>
      <main id="main" className="main">
        <Outlet />
      </main>
      <footer className="footer">
        ImageMedix · Research software, not a medical device: every finding needs a physician's review.
      </footer>
    </div>
  );
}
