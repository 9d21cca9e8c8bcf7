// node-postgres against SluiceDB: parameters, text results, errors.
const { Client } = require('pg');

async function main(port) {
  const client = new Client({ host: '127.0.0.1', port, user: 'sluice', database: 'sluice' });
  await client.connect();
  await client.query('CREATE TABLE js_clicks (user_id BIGINT, page VARCHAR, at TIMESTAMPTZ)');
  for (let i = 0; i < 10; i++) {
    await client.query('INSERT INTO js_clicks VALUES ($1, $2, $3)', [i, `/page/${i % 3}`, new Date(Date.UTC(2024, 0, 1, 0, 0, i))]);
  }
  const res = await client.query('SELECT page, count(*) AS n FROM js_clicks GROUP BY page ORDER BY page');
  const got = res.rows.map((r) => `${r.page}=${r.n}`).join(',');
  if (got !== '/page/0=4,/page/1=3,/page/2=3') throw new Error(`unexpected rows: ${got}`);
  const one = await client.query('SELECT at FROM js_clicks WHERE user_id = $1', [5]);
  if (one.rows[0].at.getTime() !== Date.UTC(2024, 0, 1, 0, 0, 5)) throw new Error(`bad timestamp ${one.rows[0].at}`);
  try {
    await client.query('SELEC 1');
    throw new Error('expected a syntax error');
  } catch (e) {
    if (e.code !== '42601') throw e;
  }
  // Values node-postgres parses from Postgres' text formats: an integer literal is int4 (a
  // number), a double prints as 2 and 0.1, timestamps without a zero fraction.
  const typed = await client.query(
    "SELECT 1 AS one, 2.0::float8 AS two, 0.1::float8 AS tenth, TIMESTAMPTZ '2024-01-01 00:00:31+00' AS at, " +
      "ARRAY[1, 2, NULL] AS arr, true AS yes, INTERVAL '90 minutes' AS span"
  );
  const row = typed.rows[0];
  if (row.one !== 1) throw new Error(`SELECT 1 gave ${JSON.stringify(row.one)}`);
  if (row.two !== 2 || row.tenth !== 0.1) throw new Error(`floats ${row.two} ${row.tenth}`);
  if (row.at.getTime() !== Date.UTC(2024, 0, 1, 0, 0, 31)) throw new Error(`timestamptz ${row.at}`);
  if (JSON.stringify(row.arr) !== '[1,2,null]') throw new Error(`array ${JSON.stringify(row.arr)}`);
  if (row.yes !== true) throw new Error(`boolean ${row.yes}`);
  if (row.span.hours !== 1 || row.span.minutes !== 30) throw new Error(`interval ${JSON.stringify(row.span)}`);
  const text = await client.query({ text: "SELECT TIMESTAMPTZ '2024-01-01 00:00:31+00' AS at, 2.0::float8 AS two", rowMode: 'array', types: { getTypeParser: () => (v) => v } });
  if (text.rows[0].join('|') !== '2024-01-01 00:00:31+00|2') throw new Error(`text ${text.rows[0].join('|')}`);
  const after = await client.query('SELECT count(*)::bigint AS n FROM js_clicks');
  if (after.rows[0].n !== '10') throw new Error(`count ${after.rows[0].n}`);
  await client.end();
  console.log('node-postgres ok');
}

main(Number(process.argv[2])).catch((e) => {
  console.error(e);
  process.exit(1);
});
