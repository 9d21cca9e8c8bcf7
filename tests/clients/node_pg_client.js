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
  const after = await client.query('SELECT count(*)::bigint AS n FROM js_clicks');
  if (after.rows[0].n !== '10') throw new Error(`count ${after.rows[0].n}`);
  await client.end();
  console.log('node-postgres ok');
}

main(Number(process.argv[2])).catch((e) => {
  console.error(e);
  process.exit(1);
});
