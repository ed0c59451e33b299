// Relative, human timestamps in the style of mobile chat apps. All inputs are RFC 3339 strings or
// Date objects; output follows the browser's locale for clock and date formats.

const DAY = 24 * 60 * 60 * 1000;

function toDate(t) {
  return t instanceof Date ? t : new Date(t);
}

function startOfDay(d) {
  const x = new Date(d);
  x.setHours(0, 0, 0, 0);
  return x;
}

/** Whole calendar days between `t` and now (0 = today, 1 = yesterday). Calendar-based, not 24h-based. */
export function daysAgo(t, now = new Date()) {
  return Math.round((startOfDay(now) - startOfDay(toDate(t))) / DAY);
}

export function clock(t) {
  return toDate(t).toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' });
}

function weekday(t) {
  return toDate(t).toLocaleDateString(undefined, { weekday: 'long' });
}

function shortDate(t) {
  const d = toDate(t);
  const sameYear = d.getFullYear() === new Date().getFullYear();
  return d.toLocaleDateString(undefined, sameYear ? { month: 'short', day: 'numeric' } : { year: 'numeric', month: 'short', day: 'numeric' });
}

/** Chat list / call history stamp: "Today, 8:55 AM", "Yesterday", "Monday", "Mar 3". */
export function listStamp(t, now = new Date()) {
  if (!t) return '';
  const d = daysAgo(t, now);
  if (d <= 0) return `Today, ${clock(t)}`;
  if (d === 1) return 'Yesterday';
  if (d < 7) return weekday(t);
  return shortDate(t);
}

/** Day separator inside a conversation: "Today", "Yesterday", "Monday", "Mar 3". */
export function dayLabel(t, now = new Date()) {
  const d = daysAgo(t, now);
  if (d <= 0) return 'Today';
  if (d === 1) return 'Yesterday';
  if (d < 7) return weekday(t);
  return shortDate(t);
}

/** Presence line under a contact's name. */
export function lastSeen(t, now = new Date()) {
  if (!t) return '';
  const d = daysAgo(t, now);
  if (d <= 0) return `last seen today at ${clock(t)}`;
  if (d === 1) return `last seen yesterday at ${clock(t)}`;
  if (d < 7) return `last seen ${weekday(t)} at ${clock(t)}`;
  return `last seen ${shortDate(t)}`;
}

/** Call duration "m:ss" or "h:mm:ss". */
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const pad = (n) => String(n).padStart(2, '0');
  return hh ? `${hh}:${pad(mm)}:${pad(ss)}` : `${mm}:${pad(ss)}`;
}
