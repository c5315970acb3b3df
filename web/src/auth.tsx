/**
 * The signed-in user. The session survives a reload (token in sessionStorage, the user read
 * again from /api/auth/me) and ends on sign-out, on the token's expiry or on any 401, back to
 * the sign-in page with the page that was open kept for after signing in again.
 */
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { useLocation, useNavigate } from 'react-router-dom';
import { api, ok, session, setUnauthorizedHandler, type Me } from './api/client';
import { draftsBelongTo, forgetAllDrafts } from './lib/drafts';

interface AuthState {
  user: Me | null;
  /** True while a stored session is being checked at start. */
  checking: boolean;
  signIn: (email: string, password: string) => Promise<void>;
  /** Takes a token from Google sign-in (the fragment of the return URL). */
  adoptToken: (token: string) => Promise<void>;
  signOut: (reason?: string) => void;
  /** Why the last session ended, shown on the sign-in page. */
  endedReason: string | null;
  /**
   * True once the user signed out themselves: the sign-in page then keeps no page to return
   * to, so whoever signs in next (a colleague at the same workstation) starts at the worklist.
   */
  signedOut: boolean;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [user, setUser] = useState<Me | null>(null);
  const [checking, setChecking] = useState(session.token !== null);
  const [endedReason, setEndedReason] = useState<string | null>(null);
  const [signedOut, setSignedOut] = useState(false);
  const navigate = useNavigate();
  const location = useLocation();

  const end = useCallback(
    (reason: string | null) => {
      const token = session.token;
      session.clear();
      if (reason === null) forgetAllDrafts();
      setUser(null);
      setEndedReason(reason);
      setSignedOut(reason === null);
      if (token && reason === null) {
        // Revokes the token where the server supports it; the local session ends regardless.
        void fetch('/api/auth/logout', { method: 'POST', headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
      }
      const here = `${window.location.pathname}${window.location.search}`;
      const next = reason && here !== '/login' ? `?next=${encodeURIComponent(here)}` : '';
      void navigate(`/login${next}`, { replace: true });
    },
    [navigate],
  );

  const loadMe = useCallback(async () => {
    const me = await ok(api.GET('/api/auth/me'));
    draftsBelongTo(me._id);
    setUser(me);
    setEndedReason(null);
    setSignedOut(false);
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => {
      if (session.token) end('Your session has ended. Sign in again to continue.');
    });
    return () => setUnauthorizedHandler(null);
  }, [end]);

  // A stored session: check it once at start.
  useEffect(() => {
    if (!session.token) return;
    loadMe()
      .catch(() => session.clear())
      .finally(() => setChecking(false));
  }, [loadMe]);

  // Sign out when the token expires, keeping the page for after signing in again.
  useEffect(() => {
    if (!user) return;
    const at = session.expiresAt();
    if (!at) return;
    const timer = setTimeout(() => end('Your session expired. Sign in again to continue.'), Math.max(0, at - Date.now()));
    return () => clearTimeout(timer);
  }, [user, end, location.key]);

  const value = useMemo<AuthState>(
    () => ({
      user,
      checking,
      endedReason,
      signedOut,
      async signIn(email, password) {
        const out = await ok(api.POST('/api/auth/login', { body: { email, password } }));
        session.set(out.token);
        await loadMe();
      },
      async adoptToken(token) {
        session.set(token);
        try {
          await loadMe();
        } catch (err) {
          session.clear();
          throw err;
        }
      },
      signOut: (reason) => end(reason ?? null),
    }),
    [user, checking, endedReason, signedOut, loadMe, end],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error('useAuth outside AuthProvider');
  return ctx;
}
