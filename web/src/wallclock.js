// Wall-clock arithmetic of the replay page. Times are epoch milliseconds; a source's "fragments"
// are its playlist's segments as the player sees them: media-timeline start and duration in
// seconds, wall-clock start (EXT-X-PROGRAM-DATE-TIME) in milliseconds.

/// The media time of `wall` in a source, or null when the source recorded nothing then (a gap).
export function mediaTimeAt(frags, wall) {
  for (const f of frags) {
    if (wall >= f.wall && wall < f.wall + f.duration * 1000) return f.start + (wall - f.wall) / 1000;
  }
  return null;
}

/// The wall-clock time of media time `t` in a source, or null outside every fragment.
export function wallAt(frags, t) {
  for (const f of frags) {
    if (t >= f.start && t < f.start + f.duration) return f.wall + (t - f.start) * 1000;
  }
  return null;
}

/// Clock time in the browser's time zone, `10:32:05`.
export function formatTime(ms) {
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

export function formatDateTime(ms) {
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${formatTime(ms)}`;
}

/// `UTC+08:00` for the browser's zone at `ms`.
export function zoneLabel(ms) {
  const off = -new Date(ms).getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const two = (n) => String(Math.floor(n)).padStart(2, '0');
  return `UTC${sign}${two(Math.abs(off) / 60)}:${two(Math.abs(off) % 60)}`;
}

/// What the user typed (`10:32:05`, `10:32`, or a full date and time) as epoch ms within
/// [start, end]. A bare time of day is taken on the session's date (either date, for a session
/// that crosses midnight). Returns {ms} or {error: 'badTime' | 'outside'}.
export function parseTypedTime(text, start, end) {
  const value = text.trim();
  const slack = 1000;
  const within = (ms) => ms >= start - slack && ms <= end + slack;
  const clock = /^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/.exec(value);
  if (clock) {
    const [h, m, s] = [clock[1], clock[2], clock[3] ?? '0'].map(Number);
    const ms = Number((clock[4] ?? '0').padEnd(3, '0'));
    if (h > 23 || m > 59 || s > 59) return { error: 'badTime' };
    for (const day of [start, end]) {
      const d = new Date(day);
      const t = new Date(d.getFullYear(), d.getMonth(), d.getDate(), h, m, s, ms).getTime();
      if (within(t)) return { ms: Math.min(Math.max(t, start), end) };
    }
    return { error: 'outside' };
  }
  const full = Date.parse(value.replace(' ', 'T'));
  if (Number.isNaN(full)) return { error: 'badTime' };
  return within(full) ? { ms: Math.min(Math.max(full, start), end) } : { error: 'outside' };
}
