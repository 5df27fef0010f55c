// node-postgres (npm `pg`, which ships without its tests) through what
// tests/drivers/run.sh points PGHOST/PGPORT at: each case below exercises
// one part of the protocol the way applications use it, and records
// "ID<TAB>pass|fail" to the file named by the first argument, as the other
// suites' recorders do. A case passes when it gets PostgreSQL's answer;
// details of a failure go to standard output.
//
//   node node_pg.js RESULTS_FILE
'use strict'

const fs = require('fs')
const { pipeline } = require('stream/promises')
const { Readable, Writable } = require('stream')
const pg = require('pg')
const Cursor = require('pg-cursor')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')

const results = []
const cases = []
const test = (name, fn) => cases.push([name, fn])

function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`)
}

function assertEqual(got, want, what) {
  const g = JSON.stringify(got)
  const w = JSON.stringify(want)
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`)
}

async function connect(extra) {
  const client = new pg.Client(Object.assign({ user: 'postgres', database: 'postgres' }, extra))
  await client.connect()
  return client
}

async function withClient(extra, fn) {
  const client = await connect(extra)
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

// --- simple and extended protocol -------------------------------------------

test('simple_query', () =>
  withClient({}, async (c) => {
    const r = await c.query("SELECT 1 AS one, 'two'::text AS two, NULL::int AS nothing")
    assertEqual(r.rows, [{ one: 1, two: 'two', nothing: null }], 'row')
    assertEqual(r.fields.map((f) => f.name), ['one', 'two', 'nothing'], 'fields')
  }))

test('simple_query_many_statements', () =>
  withClient({}, async (c) => {
    const r = await c.query('SELECT 1 AS a; SELECT 2 AS b, 3 AS c')
    assertEqual(r.length, 2, 'result count')
    assertEqual(r[1].rows, [{ b: 2, c: 3 }], 'second result')
  }))

test('extended_parameters', () =>
  withClient({}, async (c) => {
    const r = await c.query('SELECT $1::int + $2::int AS sum, $3::text AS t, $4::jsonb AS j', [
      40,
      2,
      'héllo',
      { a: [1, 2] },
    ])
    assertEqual(r.rows, [{ sum: 42, t: 'héllo', j: { a: [1, 2] } }], 'row')
  }))

test('extended_untyped_parameter_compared_with_a_series', () =>
  withClient({}, async (c) => {
    const r = await c.query('SELECT i FROM generate_series(1, 5) AS i WHERE i = $1', [3])
    assertEqual(r.rows, [{ i: 3 }], 'rows')
  }))

test('extended_mode_without_parameters', () =>
  withClient({}, async (c) => {
    const r = await c.query({ text: 'SELECT 7 AS seven', queryMode: 'extended' })
    assertEqual(r.rows, [{ seven: 7 }], 'row')
  }))

test('binary_results', () =>
  withClient({}, async (c) => {
    const r = await c.query({ text: 'SELECT 1::int4 AS a, $1::text AS b', values: ['x'], binary: true })
    assertEqual(r.rows.length, 1, 'row count')
    assertEqual(r.rows[0].a, 1, 'int4 in binary')
  }))

test('array_and_row_mode', () =>
  withClient({}, async (c) => {
    const r = await c.query({ text: "SELECT ARRAY[1,2,3] AS a, 'x' AS b", rowMode: 'array' })
    assertEqual(r.rows, [[[1, 2, 3], 'x']], 'rows')
  }))

test('named_prepared_statement_reused', () =>
  withClient({}, async (c) => {
    for (const n of [1, 2, 3]) {
      const r = await c.query({ name: 'node_pg_double', text: 'SELECT $1::int * 2 AS d', values: [n] })
      assertEqual(r.rows, [{ d: n * 2 }], `run ${n}`)
    }
  }))

test('error_then_connection_usable', () =>
  withClient({}, async (c) => {
    let code = null
    try {
      await c.query('SELECT * FROM node_pg_no_such_table')
    } catch (e) {
      code = e.code
    }
    assertEqual(code, '42P01', 'error code')
    const r = await c.query('SELECT 1 AS ok')
    assertEqual(r.rows, [{ ok: 1 }], 'after the error')
  }))

test('extended_error_then_connection_usable', () =>
  withClient({}, async (c) => {
    let code = null
    try {
      await c.query('SELECT 1 / $1::int', [0])
    } catch (e) {
      code = e.code
    }
    assertEqual(code, '22012', 'division by zero')
    const r = await c.query('SELECT $1::int AS v', [5])
    assertEqual(r.rows, [{ v: 5 }], 'after the error')
  }))

// --- transactions ---------------------------------------------------------------

test('transaction_commit_and_rollback', () =>
  withClient({}, async (c) => {
    await c.query('CREATE TEMP TABLE node_pg_tx (a int)')
    await c.query('BEGIN')
    await c.query('INSERT INTO node_pg_tx VALUES ($1)', [1])
    await c.query('COMMIT')
    await c.query('BEGIN')
    await c.query('INSERT INTO node_pg_tx VALUES ($1)', [2])
    await c.query('ROLLBACK')
    const r = await c.query('SELECT a FROM node_pg_tx ORDER BY a')
    assertEqual(r.rows, [{ a: 1 }], 'rows')
  }))

test('savepoint_after_error', () =>
  withClient({}, async (c) => {
    await c.query('BEGIN')
    await c.query('SAVEPOINT s')
    try {
      await c.query('SELECT 1/0')
    } catch (e) {
      assertEqual(e.code, '22012', 'error')
    }
    await c.query('ROLLBACK TO SAVEPOINT s')
    const r = await c.query('SELECT 2 AS two')
    await c.query('COMMIT')
    assertEqual(r.rows, [{ two: 2 }], 'after rollback to savepoint')
  }))

test('ddl_and_reads_in_one_query_string', () =>
  withClient({}, async (c) => {
    const r = await c.query(
      "CREATE TEMP TABLE node_pg_qs (id serial, name text); INSERT INTO node_pg_qs (name) VALUES ('a'), ('b'); SELECT name FROM node_pg_qs ORDER BY id"
    )
    assertEqual(r[2].rows, [{ name: 'a' }, { name: 'b' }], 'rows of the last statement')
  }))

// --- cursors and portals ----------------------------------------------------------

test('cursor_reads_in_batches', () =>
  withClient({}, async (c) => {
    const cursor = c.query(new Cursor('SELECT i FROM generate_series(1, 10) AS i WHERE i > $1', [0]))
    const seen = []
    for (;;) {
      const rows = await cursor.read(3)
      if (rows.length === 0) break
      seen.push(rows.length)
    }
    await cursor.close()
    assertEqual(seen, [3, 3, 3, 1], 'batches')
  }))

test('sql_cursor_declare_fetch_move', () =>
  withClient({}, async (c) => {
    await c.query('BEGIN')
    await c.query('DECLARE node_pg_cur SCROLL CURSOR FOR SELECT i FROM generate_series(1, 5) AS i')
    const first = await c.query('FETCH 2 FROM node_pg_cur')
    await c.query('MOVE 1 IN node_pg_cur')
    const rest = await c.query('FETCH ALL FROM node_pg_cur')
    await c.query('CLOSE node_pg_cur')
    await c.query('COMMIT')
    assertEqual(first.rows, [{ i: 1 }, { i: 2 }], 'first fetch')
    assertEqual(rest.rows, [{ i: 4 }, { i: 5 }], 'after move')
  }))

// --- COPY ------------------------------------------------------------------------

test('copy_from_stdin_and_to_stdout', () =>
  withClient({}, async (c) => {
    await c.query('CREATE TEMP TABLE node_pg_copy (id int, note text)')
    await pipeline(Readable.from(['1\tone\n', '2\ttwo\n', '3\t\\N\n']), c.query(copyFrom('COPY node_pg_copy FROM STDIN')))
    let out = ''
    await pipeline(
      c.query(copyTo('COPY (SELECT id, note FROM node_pg_copy ORDER BY id) TO STDOUT')),
      new Writable({
        write(chunk, _enc, done) {
          out += chunk.toString()
          done()
        },
      })
    )
    assertEqual(out, '1\tone\n2\ttwo\n3\t\\N\n', 'copied out')
  }))

test('copy_from_bad_row_then_usable', () =>
  withClient({}, async (c) => {
    await c.query('CREATE TEMP TABLE node_pg_copy_bad (id int)')
    let code = null
    try {
      await pipeline(Readable.from(['1\n', 'x\n']), c.query(copyFrom('COPY node_pg_copy_bad FROM STDIN')))
    } catch (e) {
      code = e.code
    }
    assertEqual(code, '22P02', 'error of the bad row')
    const r = await c.query('SELECT count(*)::int AS n FROM node_pg_copy_bad')
    assertEqual(r.rows, [{ n: 0 }], 'nothing copied')
  }))

// --- pipelining, cancel, notifications ----------------------------------------------

test('pipelined_queries_answer_in_order', () =>
  withClient({ pipeline: true }, async (c) => {
    const all = await Promise.all(
      [1, 2, 3, 4, 5].map((n) => c.query('SELECT $1::int AS n, pg_sleep(0.01)', [n]))
    )
    assertEqual(all.map((r) => r.rows[0].n), [1, 2, 3, 4, 5], 'order')
  }))

test('pipelined_error_does_not_stop_the_next_query', () =>
  withClient({ pipeline: true }, async (c) => {
    const outcomes = await Promise.allSettled([
      c.query('SELECT 1 AS a'),
      c.query('SELECT 1/0'),
      c.query('SELECT 3 AS c'),
    ])
    assertEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled'], 'outcomes')
    assertEqual(outcomes[2].value.rows, [{ c: 3 }], 'query after the error')
  }))

test('cancel_a_running_query', () =>
  withClient({}, async (c) => {
    const running = c.query('SELECT pg_sleep(30)')
    await new Promise((r) => setTimeout(r, 500))
    const canceller = new pg.Client({ user: 'postgres', database: 'postgres' })
    canceller.cancel(c, c.activeQuery)
    let code = null
    const started = Date.now()
    try {
      await running
    } catch (e) {
      code = e.code
    }
    assertEqual(code, '57014', 'query_canceled')
    assert(Date.now() - started < 20000, 'cancelled in time')
    const r = await c.query('SELECT 1 AS ok')
    assertEqual(r.rows, [{ ok: 1 }], 'after the cancel')
  }))

test('statement_timeout', () =>
  withClient({ statement_timeout: 200 }, async (c) => {
    let code = null
    try {
      await c.query('SELECT pg_sleep(5)')
    } catch (e) {
      code = e.code
    }
    assertEqual(code, '57014', 'statement timeout')
  }))

test('listen_notify', () =>
  withClient({}, async (listener) => {
    await listener.query('LISTEN node_pg_channel')
    const got = new Promise((resolve) => listener.once('notification', resolve))
    await withClient({}, (sender) => sender.query("SELECT pg_notify('node_pg_channel', 'payload-1')"))
    const n = await Promise.race([got, new Promise((_, reject) => setTimeout(() => reject(new Error('no notification')), 10000))])
    assertEqual([n.channel, n.payload], ['node_pg_channel', 'payload-1'], 'notification')
  }))

test('notice_reaches_the_client', () =>
  withClient({}, async (c) => {
    const got = new Promise((resolve) => c.once('notice', resolve))
    await c.query("DO $$ BEGIN RAISE NOTICE 'plain notice'; END $$")
    const n = await Promise.race([got, new Promise((_, reject) => setTimeout(() => reject(new Error('no notice')), 5000))])
    assertEqual(n.message, 'plain notice', 'notice')
  }))

test('pool_checkout_and_reuse', async () => {
  const pool = new pg.Pool({ user: 'postgres', database: 'postgres', max: 3 })
  try {
    const all = await Promise.all([...Array(9).keys()].map((i) => pool.query('SELECT $1::int AS i', [i])))
    assertEqual(all.map((r) => r.rows[0].i), [...Array(9).keys()], 'results')
  } finally {
    await pool.end()
  }
})

async function main() {
  const out = process.argv[2]
  if (!out) {
    console.error('usage: node node_pg.js RESULTS_FILE')
    process.exit(2)
  }
  for (const [name, fn] of cases) {
    let outcome = 'pass'
    try {
      await Promise.race([
        fn(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('timed out after 60 s')), 60000).unref()),
      ])
    } catch (e) {
      outcome = 'fail'
      console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`)
    }
    if (outcome === 'pass') console.log(`ok ${name}`)
    results.push(`${name}\t${outcome}`)
    fs.writeFileSync(out, results.join('\n') + '\n')
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e)
    process.exit(1)
  }
)
