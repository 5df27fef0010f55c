//! The retail-bank fixture shared by the masking and red-team tests: a
//! `bank` database with customers, cards and an audit trail, the roles of
//! tests/fixtures/masking/bank.yaml, known raw values to look for, and a
//! pgveil enforcing that policy.

use super::{cluster, Proxy, SUPERUSER_PASSWORD};

pub const ID_NUMBER: &str = "11010519491231002X";
pub const ID_HIDDEN: &str = "19491231";
pub const MOBILE: &str = "13987654321";
pub const MOBILE_HIDDEN: &str = "8765";
pub const CARD: &str = "6222021234567890128";
pub const CARD_HIDDEN: &str = "123456789";
pub const NAME: &str = "张三丰";
pub const GIVEN: &str = "三丰";
pub const PASSWORD: &str = "role-pw";
/// Raw values and hidden parts: none may reach a masked role.
pub const SECRETS: [&str; 7] = [
    ID_NUMBER,
    ID_HIDDEN,
    MOBILE,
    MOBILE_HIDDEN,
    CARD,
    CARD_HIDDEN,
    GIVEN,
];

/// Extra definitions placed in `customers` just before `id_number` (a
/// generated column, say), or nothing.
pub fn create(customers_extra: &str) {
    let c = cluster();
    c.psql_super("CREATE DATABASE bank").unwrap();
    c.psql_super_db(
        "bank",
        &format!(
            "CREATE TABLE customers (id serial PRIMARY KEY, full_name text NOT NULL,
               {customers_extra}
               id_number varchar(18) UNIQUE NOT NULL, mobile text, annual_income numeric(12,2),
               branch text);
             CREATE TABLE cards (id serial PRIMARY KEY, customer_id int REFERENCES customers,
               card_no text UNIQUE, cvv char(3), status text);
             CREATE TABLE audit_trail (id serial PRIMARY KEY, note text);
             CREATE VIEW customer_contacts AS SELECT id, full_name, mobile FROM customers;
             INSERT INTO customers (full_name, id_number, mobile, annual_income, branch) VALUES
               ('{NAME}', '{ID_NUMBER}', '{MOBILE}', 123456.78, 'Hangzhou'),
               ('Alice Smith', '440301199001011234', '13800000000', 45000, 'Shenzhen');
             INSERT INTO cards (customer_id, card_no, cvv, status) VALUES
               (1, '{CARD}', '987', 'active'), (2, '4111111111111111', '123', 'active');
             INSERT INTO audit_trail (note) VALUES ('opened');
             CREATE ROLE compliance NOLOGIN; CREATE ROLE call_center NOLOGIN;
             CREATE ROLE analyst NOLOGIN; CREATE ROLE intern NOLOGIN;
             CREATE ROLE team_east NOLOGIN IN ROLE call_center;
             CREATE ROLE auditor LOGIN PASSWORD '{PASSWORD}' IN ROLE compliance;
             CREATE ROLE agent LOGIN PASSWORD '{PASSWORD}' IN ROLE team_east;
             CREATE ROLE dev LOGIN PASSWORD '{PASSWORD}';
             CREATE ROLE trainee LOGIN PASSWORD '{PASSWORD}' IN ROLE intern;
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;
             GRANT CREATE ON SCHEMA public TO PUBLIC;
             ANALYZE;"
        ),
    )
    .unwrap();
}

/// The environment pgveil needs for the fixture's policy.
pub const ENV: [(&str, &str); 2] = [
    ("PGVEIL_CATALOG_PASSWORD", SUPERUSER_PASSWORD),
    ("PGVEIL_KEY_PII", "test-key-for-pii-tokens"),
];

/// The fixture's policy directory.
pub const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/masking");

/// pgveil enforcing the fixture's policy (or the one in `policies`).
pub fn start_proxy(policies: &str) -> Proxy {
    Proxy::start_with_env(
        &["--policies", policies, "--catalog-user", "postgres"],
        &ENV,
    )
}
