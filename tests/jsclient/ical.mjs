// A second, independent reading of an iCalendar file (Mozilla's ical.js, as in
// Thunderbird's lineage), for tests that check the bot's calendars do not only
// please the Python library that wrote them.
//
//   node ical.mjs < agenda.ics  →  {"name": ..., "events": [{uid, summary, start, ...}]}
//
// `start`/`end`: wall time with its UTC offset (2026-11-24T14:00:00+01:00) or a date
// for all-day events; `start_utc`: the instant (…Z), null for all-day events; `tzid`:
// the zone the file names. Times are resolved with the file's own VTIMEZONEs only.
import ICAL from "ical.js";

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (chunk) => chunks.push(chunk));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

function pad(n) {
  return String(Math.abs(n)).padStart(2, "0");
}

function local(time) {
  if (time.isDate) {
    return time.toString();
  }
  // utcOffset() needs the zone's rules: from the VTIMEZONEs registered below.
  const offset = time.utcOffset() / 60;
  const sign = offset < 0 ? "-" : "+";
  return `${time.toString().replace(/Z$/, "")}${sign}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
}

function instant(time) {
  return time.isDate ? null : time.toJSDate().toISOString().replace(/\.000Z$/, "Z");
}

const text = await readStdin();
const calendar = new ICAL.Component(ICAL.parse(text));
for (const zone of calendar.getAllSubcomponents("vtimezone")) {
  ICAL.TimezoneService.register(zone);
}
const events = calendar.getAllSubcomponents("vevent").map((component) => {
  const event = new ICAL.Event(component);
  return {
    uid: event.uid,
    summary: event.summary,
    start: local(event.startDate),
    end: local(event.endDate),
    start_utc: instant(event.startDate),
    tzid: event.startDate.isDate ? null : event.startDate.zone.tzid,
    sequence: event.sequence,
    status: component.getFirstPropertyValue("status"),
    recurring: event.isRecurring(),
  };
});
process.stdout.write(
  JSON.stringify({ name: calendar.getFirstPropertyValue("x-wr-calname"), events }) + "\n",
);
