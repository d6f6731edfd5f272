// The stats API client: every request carries the bearer token; every failure is an ApiError.

export class ApiError extends Error {
  /** status 0 = no HTTP answer (network failure). */
  constructor(status, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.retryAfter = retryAfter;
  }
  get auth() { return this.status == 401 || this.status == 403; }
}

/** GET `path` (same origin) as JSON. Rejects with ApiError, or an AbortError when `signal` fires. */
export async function getJson(path, token, signal) {
  let res;
  try {
    res = await fetch(path, {
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      cache: 'no-store', credentials: 'same-origin', redirect: 'error', signal
    });
  } catch (e) {
    if (e && e.name == 'AbortError') throw e;
    throw new ApiError(0, 'The collector did not answer (network error).');
  }
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON */ }
  if (signal && signal.aborted) throw new DOMException('aborted', 'AbortError');
  if (!res.ok) {
    const msg = body && typeof body.error == 'string' && body.error ? body.error : `HTTP ${res.status}`;
    throw new ApiError(res.status, msg, res.headers.get('Retry-After'));
  }
  if (!body || typeof body != 'object') throw new ApiError(res.status, 'The answer was not a JSON object.');
  return body;
}
