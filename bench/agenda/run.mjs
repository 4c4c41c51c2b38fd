// Agenda 6 drains `count` jobs, each one HTTP POST to the local Flowroute, with `concurrency`
// jobs at a time in one process. Prints one JSON line: {"sent": n, "seconds": s}.
// Usage: node run.mjs URI DATABASE FLOWROUTE_URL ACCESS_KEY SECRET_KEY COUNT CONCURRENCY
import { Agenda } from 'agenda';
import { MongoBackend } from '@agendajs/mongo-backend';
import { MongoClient } from 'mongodb';

const [uri, database, flowroute, access, secret, countText, concurrencyText] = process.argv.slice(2);
const count = Number(countText);
const concurrency = Number(concurrencyText);
const auth = 'Basic ' + Buffer.from(`${access}:${secret}`).toString('base64');

const client = await MongoClient.connect(uri);
const db = client.db(database);
const agenda = new Agenda({
  backend: new MongoBackend({ mongo: db, collection: 'agendaJobs' }),
  processEvery: 100,
  maxConcurrency: concurrency,
  defaultConcurrency: concurrency,
  defaultLockLimit: concurrency,
});

let sent = 0;
let failed = 0;
let finished = 0;
let finish;
const done = new Promise((resolve) => { finish = resolve; });

agenda.define('send sms', async (job) => {
  const { to, from, body } = job.attrs.data;
  const response = await fetch(`${flowroute}/v2.1/messages`, {
    method: 'POST',
    headers: { Authorization: auth, 'Content-Type': 'application/vnd.api+json' },
    body: JSON.stringify({ data: { type: 'message', attributes: { to, from, body } } }),
  });
  await response.arrayBuffer();
  if (response.status !== 202) throw new Error(`Flowroute answered ${response.status}`);
}, { concurrency, lockLimit: concurrency });

agenda.on('success', () => { sent += 1; });
agenda.on('fail', () => { failed += 1; });
agenda.on('complete', () => {
  finished += 1;
  if (finished >= count) finish();
});

for (let i = 0; i < count; i += 1) {
  const to = `1206555${String(i).padStart(4, '0')}`;
  await agenda.create('send sms', { to, from: '12065550100', body: `hello ${i}` }).save();
}

const started = performance.now();
await agenda.start();
await done;
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ sent, failed, seconds }));
await agenda.stop();
process.exit(0);
