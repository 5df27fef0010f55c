//! JSON values a statement builds, masked where each protected value sits:
//! the shapes ORMs load related rows with (Drizzle's `json_build_array`
//! under a LATERAL join, Prisma's `JSONB_BUILD_OBJECT` + `JSONB_AGG`,
//! PostgREST's `json_agg` of a subquery's rows), through tokio-postgres on
//! both protocols (the extended one reads json and jsonb in binary). What
//! pgveil cannot place inside the value stays refused.

mod common;

use std::sync::OnceLock;

use common::bank::{self, *};
use common::probe::*;
use common::{cluster, Proxy};

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        cluster()
            .psql_super_db(
                "bank",
                "CREATE ROLE ana LOGIN PASSWORD 'role-pw' IN ROLE analyst;",
            )
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

/// Drizzle's relational query: each customer with its cards as arrays.
const DRIZZLE: &str = "SELECT c.id, c.full_name, cards.data AS cards FROM customers c \
     LEFT JOIN LATERAL (SELECT coalesce(json_agg(json_build_array(k.id, k.card_no, k.status) \
     ORDER BY k.id), '[]'::json) AS data FROM cards k WHERE k.customer_id = c.id) cards ON true \
     ORDER BY c.id";

/// Prisma's relation join: objects built in a subquery, aggregated as jsonb.
const PRISMA: &str = "SELECT t1.id, c_cards.__prisma_data__ AS cards FROM customers AS t1 \
     LEFT JOIN LATERAL (SELECT COALESCE(JSONB_AGG(__prisma_data__), '[]') AS __prisma_data__ \
     FROM (SELECT t4.__prisma_data__ FROM (SELECT JSONB_BUILD_OBJECT('id', t3.id, 'card_no', \
     t3.card_no, 'status', t3.status) AS __prisma_data__ FROM (SELECT t2.* FROM cards AS t2 \
     WHERE t1.id = t2.customer_id) AS t3) AS t4) AS t5) AS c_cards ON true ORDER BY t1.id";

/// PostgREST: the rows of a subquery as one JSON array of objects.
const POSTGREST: &str = "SELECT coalesce(json_agg(_t), '[]')::text AS body FROM \
     (SELECT customers.id, customers.mobile, customers.id_number FROM customers ORDER BY id) _t";

async fn texts(s: &Session, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let simple =
        s.c.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)));
    out.push(simple_text(&simple));
    let rows =
        s.c.query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql} (extended): {}", error_text(&e)));
    for row in rows {
        for i in 0..row.len() {
            let text = match row.columns()[i].type_().name() {
                "json" | "jsonb" => row
                    .get::<_, Option<serde_json::Value>>(i)
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                "int4" => row.get::<_, i32>(i).to_string(),
                _ => row.get::<_, Option<String>>(i).unwrap_or_default(),
            };
            out.push(text);
        }
    }
    out
}

#[tokio::test]
async fn orm_relation_loads_come_back_masked_inside_the_json() {
    let s = Session::connect(setup(), "dev").await;
    for sql in [DRIZZLE, PRISMA, POSTGREST] {
        let all = texts(&s, sql).await.join("\n");
        s.check(sql, &all);
        // The card number's last four digits and BIN show, as in a column
        // of its own; the middle digits do not.
        if sql != POSTGREST {
            assert!(
                all.contains("0128") && all.contains("622202"),
                "{sql}: {all}"
            );
            assert!(!all.contains(CARD), "{sql}: {all}");
            assert!(all.contains("active"), "{sql}: {all}");
        } else {
            assert!(all.contains("139****4321"), "{sql}: {all}");
            assert!(!all.contains(MOBILE) && !all.contains(ID_NUMBER), "{all}");
        }
    }
    // Each built form on its own, masked like the column.
    for (sql, expect) in [
        (
            "SELECT json_build_object('id', id, 'm', mobile) FROM customers WHERE id = 1",
            "139****4321",
        ),
        (
            "SELECT jsonb_build_array(mobile, id) FROM customers WHERE id = 1",
            "139****4321",
        ),
        (
            "SELECT row_to_json(c) FROM (SELECT id, mobile FROM customers) c WHERE id = 1",
            "139****4321",
        ),
        (
            "SELECT to_jsonb(c) FROM (SELECT id, mobile AS \"a\"\"b\" FROM customers) c WHERE id = 1",
            "139****4321",
        ),
        (
            "SELECT json_agg(mobile ORDER BY id) FROM customers",
            "138****0000",
        ),
        (
            "SELECT (SELECT json_build_object('m', mobile) FROM customers WHERE id = 1)::text",
            "139****4321",
        ),
        (
            "SELECT json_strip_nulls(j) FROM (SELECT json_build_object('m', mobile) AS j \
             FROM customers WHERE id = 1) w",
            "139****4321",
        ),
    ] {
        let all = texts(&s, sql).await.join("\n");
        s.check(sql, &all);
        assert!(all.contains(expect), "{sql}: {all}");
    }
    s.finish();
}

#[tokio::test]
async fn what_pgveil_cannot_place_inside_the_json_is_refused() {
    let s = Session::connect(setup(), "dev").await;
    for sql in [
        // A computed part, a denied part, a part under another name.
        "SELECT json_build_object('m', upper(mobile)) FROM customers",
        "SELECT json_build_object('m', mobile || '') FROM customers",
        "SELECT json_agg(k) FROM cards k",
        "SELECT json_build_array(k.id, k.cvv) FROM cards k",
        "SELECT json_build_object(full_name, mobile) FROM customers",
        "SELECT json_build_object('m', mobile, 'm', id) FROM customers",
        "SELECT json_build_object(E'm\\\\', mobile) FROM customers",
        // Reading a part back out, or cutting the text.
        "SELECT json_build_object('m', mobile)->>'m' FROM customers",
        "SELECT (json_build_object('m', mobile)::jsonb)['m'] FROM customers",
        "SELECT j->>'m' FROM (SELECT json_build_object('m', mobile) j FROM customers) s",
        "SELECT json_build_object('m', mobile)::varchar(20) FROM customers",
        "SELECT left(json_build_object('m', mobile)::text, 20) FROM customers",
        // Which alternative a row holds is not known.
        "SELECT json_build_object('m', 'x') UNION ALL SELECT json_build_object('m', mobile) FROM customers",
        "SELECT CASE WHEN id = 1 THEN json_build_object('a', mobile) ELSE json_build_object('a', 'x') END FROM customers",
        "SELECT coalesce(json_build_object('a', mobile), json_build_object('a', id_number)) FROM customers",
        // Sorted by the clear values.
        "SELECT json_agg(DISTINCT mobile) FROM customers",
        "SELECT json_agg(mobile ORDER BY mobile) FROM customers",
        "SELECT json_agg(k.card_no) FROM cards k GROUP BY k.card_no",
        // Filtering by a built value is filtering by the column.
        "SELECT id FROM customers WHERE json_build_object('m', mobile)::text LIKE '%139%'",
        // Round 10: members PostgreSQL names otherwise than pgveil would
        // (CASE after its ELSE, COLLATE after its operand, identifiers cut
        // at 63 bytes) could take another member's mask.
        "SELECT row_to_json(t) FROM (SELECT 'x' AS mobile, mobile COLLATE \"C\" FROM customers) t",
        "SELECT to_jsonb(t) FROM (SELECT 'x' AS mobile, CASE WHEN false THEN NULL ELSE mobile END \
         FROM customers) t",
        "SELECT json_agg(t) FROM (SELECT 'x' AS aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1, \
         mobile AS aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2 FROM customers) t",
        // A fallback with values would be masked as the shape says.
        "SELECT coalesce(json_agg(json_build_object('m', mobile)), '[{\"m\": \"13987654321\"}]') \
         FROM customers WHERE false",
    ] {
        s.refused(sql).await;
    }
    s.finish();
    // A keyed token of a chosen value stays refused inside JSON too.
    let ana = Session::connect(setup(), "ana").await;
    ana.refused(
        "SELECT json_build_object('i', coalesce(id_number, '11010519491231002X')) FROM customers",
    )
    .await;
    ana.refused(
        "SELECT json_agg(x) FROM (SELECT id_number x FROM customers UNION ALL SELECT '1') s",
    )
    .await;
    ana.refused(
        "SELECT coalesce(jsonb_agg(id_number), '[\"11010519491231002X\"]') FROM customers WHERE false",
    )
    .await;
    let all = texts(
        &ana,
        "SELECT json_build_object('i', id_number) FROM customers WHERE id = 1",
    )
    .await
    .join("\n");
    ana.check("token in JSON", &all);
    assert!(!all.contains(ID_NUMBER) && all.contains("\"i\""), "{all}");
    ana.finish();
}
