import { useEffect, useState } from 'react';
import { Navigate, useSearchParams } from 'react-router-dom';
import { api, errorMessage } from '../api/client';
import { useAuth } from '../auth';
import { Logo } from '../components/Logo';
import { Alert } from '../components/ui';
import { safeNext, signInErrorText } from '../lib/api-errors';
import { useDocumentTitle, useFormAction } from '../lib/hooks';

export function Login() {
  const { user, signIn, adoptToken, endedReason } = useAuth();
  const [params] = useSearchParams();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [google, setGoogle] = useState(false);
  const next = safeNext(params.get('next'));
  const { onSubmit, busy, error, setError } = useFormAction(() => signIn(email.trim(), password), signInErrorText);
  useDocumentTitle('Sign in');

  useEffect(() => {
    void api.GET('/api/auth/google/enabled').then(({ data }) => setGoogle(data?.enabled === true), () => undefined);
    // Google sign-in returns here with the token (or an error) in the fragment.
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
    const token = fragment.get('token');
    if (token) adoptToken(token).catch((err: unknown) => setError(errorMessage(err)));
    else if (fragment.get('error')) setError(fragment.get('error_description') ?? 'Google sign-in failed.');
  }, [adoptToken, setError]);

  if (user) return <Navigate to={next} replace />;

  return (
    <div className="login-page">
      <main className="login-card" id="main">
        <div className="login-brand">
          <Logo size={44} />
          <div>
            <p className="login-name">ImageMedix</p>
            <p className="login-tagline">Medical image analysis</p>
          </div>
        </div>
        <h1 tabIndex={-1}>Sign in</h1>
        {endedReason && !error && <Alert kind="info">{endedReason}</Alert>}
        {error && <Alert>{error}</Alert>}
        <form onSubmit={onSubmit} className="form" noValidate>
          <div className="field">
            <label htmlFor="email">Email</label>
            <input
              id="email"
              type="email"
              autoComplete="username"
              required
              value={email}
              onChange={(e) => setEmail(e.target.value)}
            />
          </div>
          <div className="field">
            <label htmlFor="password">Password</label>
            <input
              id="password"
              type="password"
              autoComplete="current-password"
              required
              value={password}
              onChange={(e) => setPassword(e.target.value)}
            />
          </div>
          <button type="submit" className="btn btn-primary btn-block" disabled={busy || !email || !password}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
        {google && (
          <>
            <div className="divider">
              <span>or</span>
            </div>
            <a className="btn btn-secondary btn-block" href="/api/auth/google">
              Sign in with Google
            </a>
          </>
        )}
        <p className="login-note">Research software, not a medical device. Every finding needs a physician's review.</p>
      </main>
    </div>
  );
}
