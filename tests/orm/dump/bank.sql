-- A retail-bank schema with the objects real dumps carry: a schema, enum and
-- domain types, identity and serial keys, foreign keys, checks, partial and
-- expression indexes, a generated column, a partitioned table, views, a
-- materialized view, a PL/pgSQL trigger, comments and data. tests/orm.rs
-- loads it directly, dumps it with pg_dump and restores the dump through
-- pgveil as a masked role.
CREATE SCHEMA bank;
CREATE TYPE bank.card_status AS ENUM ('active', 'blocked', 'expired');
CREATE DOMAIN bank.money_amount AS numeric(14, 2) CHECK (VALUE > -1000000000);

CREATE TABLE bank.branch (
  id serial PRIMARY KEY,
  code text NOT NULL UNIQUE,
  city text NOT NULL
);
CREATE TABLE bank.customer (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  branch_id int REFERENCES bank.branch ON DELETE SET NULL,
  full_name text NOT NULL,
  id_number varchar(18) NOT NULL UNIQUE,
  mobile text,
  email text,
  birth date,
  search_name text GENERATED ALWAYS AS (lower(full_name)) STORED,
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT customer_id_number_len CHECK (length(id_number) = 18)
);
COMMENT ON TABLE bank.customer IS 'retail customers';
COMMENT ON COLUMN bank.customer.id_number IS 'resident ID number (C3)';
CREATE INDEX customer_mobile_idx ON bank.customer (mobile) WHERE mobile IS NOT NULL;
CREATE INDEX customer_email_lower_idx ON bank.customer (lower(email));

CREATE TABLE bank.card (
  pan text PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES bank.customer ON DELETE CASCADE,
  status bank.card_status NOT NULL DEFAULT 'active',
  limit_amount bank.money_amount NOT NULL DEFAULT 0
);

CREATE TABLE bank.txn (
  id bigserial,
  pan text NOT NULL,
  amount bank.money_amount NOT NULL,
  booked_on date NOT NULL,
  merchant text,
  PRIMARY KEY (id, booked_on)
) PARTITION BY RANGE (booked_on);
CREATE TABLE bank.txn_2025 PARTITION OF bank.txn FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE bank.txn_2026 PARTITION OF bank.txn FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');

CREATE FUNCTION bank.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;
CREATE TRIGGER customer_touch BEFORE UPDATE ON bank.customer
  FOR EACH ROW EXECUTE FUNCTION bank.touch_updated_at();

CREATE VIEW bank.customer_directory AS
  SELECT c.id, c.full_name, c.mobile, b.city
  FROM bank.customer c LEFT JOIN bank.branch b ON b.id = c.branch_id;
CREATE MATERIALIZED VIEW bank.monthly_spend AS
  SELECT date_trunc('month', booked_on)::date AS month, count(*) AS n, sum(amount) AS total
  FROM bank.txn GROUP BY 1;

INSERT INTO bank.branch (code, city) VALUES ('HZ01', 'Hangzhou'), ('SZ01', 'Shenzhen');
INSERT INTO bank.customer (branch_id, full_name, id_number, mobile, email, birth) VALUES
  (1, '赵六', '330106197703030036', '13566667777', 'zhao@example.com', '1977-03-03'),
  (2, 'Maria Garcia', '440301199212120047', '13600001111', NULL, '1992-12-12');
INSERT INTO bank.card (pan, customer_id, status, limit_amount) VALUES
  ('6222020000000000018', 1, 'active', 50000), ('6222020000000000026', 2, 'blocked', 8000);
INSERT INTO bank.txn (pan, amount, booked_on, merchant) VALUES
  ('6222020000000000018', 88.80, '2025-11-02', 'Tea House'),
  ('6222020000000000018', 1200.00, '2026-01-15', 'Airline'),
  ('6222020000000000026', 15.50, '2026-02-01', 'Metro');
REFRESH MATERIALIZED VIEW bank.monthly_spend;
