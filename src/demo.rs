//! `pgveil demo`: a throwaway PostgreSQL with synthetic bank customers and
//! the shipped policy packs, behind pgveil, for a first look.
//!
//! Everything lives in a temporary directory that is removed on exit. The
//! data is generated here: ID numbers carry a valid GB 11643 check character
//! and card numbers a valid Luhn digit, so detectors and masks behave as on
//! real data, but no value belongs to anyone.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::config::ServeArgs;

/// Arguments of `pgveil demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Port pgveil listens on.
    #[arg(long, default_value_t = 6432)]
    pub port: u16,
    /// Customers to generate.
    #[arg(long, default_value_t = 1000)]
    pub customers: u32,
    /// Port of the Prometheus metrics endpoint (`/metrics`); 0 serves none,
    /// so a second demo can run beside the first.
    #[arg(long, default_value_t = 9187)]
    pub metrics_port: u16,
}

const FINANCE_CN: &str = include_str!("../policies/finance-cn.yaml");
const PCI_DSS: &str = include_str!("../policies/pci-dss.yaml");

/// Roles of the packs, created as login roles (password = role name).
const ROLES: &[&str] = &[
    "compliance",
    "call_center",
    "analyst",
    "risk_officer",
    "collector",
    "fraud_analyst",
    "settlement",
    "support",
    "developer",
];

/// PostgreSQL's server binaries: `$PG_BIN`, the newest
/// `/usr/lib/postgresql/*/bin`, then `pg_config --bindir`.
pub fn pg_bin() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().or_else(|| {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        dir.join("initdb").exists().then_some(dir)
    })
}

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
}

fn as_postgres(bin: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Stops the server and removes the directory when dropped.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    root: bool,
    started: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let _ = run(
                as_postgres(&self.bin.join("pg_ctl"), self.root)
                    .arg("-D")
                    .arg(self.dir.join("data"))
                    .args(["-m", "fast", "stop"]),
                "pg_ctl stop",
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `pgveil demo` until Ctrl-C.
pub fn demo(args: DemoArgs) -> ExitCode {
    match prepare(&args) {
        Ok((cluster, pg_port)) => {
            let policies = cluster.dir.join("policies");
            println!(
                "\npgveil demo: PostgreSQL on 127.0.0.1:{pg_port}, pgveil on 127.0.0.1:{port}\n\
                 Connect as any of these roles (password = role name):\n  {roles}\n\
                 For example:\n  \
                 PGPASSWORD=call_center psql \"host=127.0.0.1 port={port} user=call_center dbname=bank\" \\\n    \
                 -c \"SELECT full_name, id_number, mobile FROM customers LIMIT 5\"\n  \
                 PGPASSWORD=developer psql \"host=127.0.0.1 port={port} user=developer dbname=bank\" \\\n    \
                 -c \"SELECT * FROM cards LIMIT 3\"      # cvv is denied: 42501\n\
                 Policies: {policies} (edit them: pgveil reloads on save). Ctrl-C stops the demo.\n",
                port = args.port,
                roles = ROLES.join(", "),
                policies = policies.display(),
            );
            let serve = ServeArgs {
                listen: Some(format!("127.0.0.1:{}", args.port)),
                upstream: Some(format!("127.0.0.1:{pg_port}")),
                policies: Some(policies),
                catalog_user: Some("postgres".into()),
                // An empty address serves no metrics (`--metrics-listen ""`).
                metrics_listen: Some(match args.metrics_port {
                    0 => String::new(),
                    port => format!("127.0.0.1:{port}"),
                }),
                drain_timeout: Some(2.0),
                ..Default::default()
            };
            let code = crate::net::serve_main(serve);
            drop(cluster);
            code
        }
        Err(e) => {
            eprintln!("pgveil demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn prepare(args: &DemoArgs) -> Result<(Cluster, u16), String> {
    let bin = pg_bin().ok_or(
        "PostgreSQL server binaries not found: install PostgreSQL (initdb, pg_ctl) or set PG_BIN",
    )?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("pgveil-demo-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("policies")).map_err(|e| e.to_string())?;
    let mut cluster = Cluster {
        dir: dir.clone(),
        bin: bin.clone(),
        root,
        started: false,
    };
    // Run as root, the server runs as `postgres`, which must own its files.
    let give_to_postgres = || -> Result<(), String> {
        if root {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown",
            )?;
        }
        Ok(())
    };
    std::fs::write(dir.join("policies/finance-cn.yaml"), FINANCE_CN).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("policies/pci-dss.yaml"), PCI_DSS).map_err(|e| e.to_string())?;
    give_to_postgres()?;
    let data = dir.join("data");
    eprintln!(
        "pgveil demo: creating a throwaway cluster in {}",
        dir.display()
    );
    run(
        as_postgres(&bin.join("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync"),
        "initdb",
    )?;
    let port = free_port()?;
    let conf = format!(
        "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n",
        dir.display()
    );
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .map_err(|e| e.to_string())?;
        f.write_all(conf.as_bytes()).map_err(|e| e.to_string())?;
    }
    // Passwords are checked (scram) so that roles are real logins; the
    // catalog user connects locally without one.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .map_err(|e| e.to_string())?;
    give_to_postgres()?;
    run(
        as_postgres(&bin.join("pg_ctl"), root)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .args(["-w", "start"]),
        "pg_ctl start",
    )?;
    cluster.started = true;
    let sql = demo_sql(args.customers);
    let script = dir.join("demo.sql");
    std::fs::write(&script, sql).map_err(|e| e.to_string())?;
    if root {
        run(Command::new("chown").arg("postgres").arg(&script), "chown")?;
    }
    run(
        Command::new(bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&dir)
            .args([
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-f",
            ])
            .arg(&script),
        "loading demo data",
    )?;
    for (key, value) in [
        ("PGVEIL_KEY_PII", "demo-key-pii-not-for-production"),
        ("PGVEIL_KEY_PAN_TOKEN", "demo-key-pan-not-for-production"),
    ] {
        if std::env::var(key).is_err() {
            std::env::set_var(key, value);
        }
    }
    Ok((cluster, port))
}

/// A small deterministic generator, so every demo shows the same rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// GB 11643-1999 check character of the first 17 digits.
fn id_check(first17: &str) -> char {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .chars()
        .zip(W)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'][(sum % 11) as usize]
}

fn luhn_complete(partial: &str) -> String {
    let sum: u32 = partial
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap_or(0);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    format!("{partial}{}", (10 - sum % 10) % 10)
}

fn demo_sql(customers: u32) -> String {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let surnames = [
        "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "欧阳", "司马", "诸葛",
    ];
    let given = [
        "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳",
    ];
    let places = [
        ("110105", "北京市朝阳区", "建国路"),
        ("310104", "上海市徐汇区", "漕溪北路"),
        ("330106", "浙江省杭州市西湖区", "文三路"),
        ("440305", "广东省深圳市南山区", "科技园路"),
        ("510107", "四川省成都市武侯区", "人民南路"),
    ];
    let bins = ["622202", "621700", "622848", "456351", "622588"];
    let mut sql = String::from(
        "CREATE DATABASE bank;\n\\connect bank\n\
         CREATE TABLE customers (id serial PRIMARY KEY, full_name text NOT NULL, id_number varchar(18) UNIQUE NOT NULL,\n\
           mobile varchar(20), email text, address text, birth_date date, annual_income numeric(12,2), branch text, opened_at timestamptz DEFAULT now());\n\
         CREATE TABLE cards (id serial PRIMARY KEY, customer_id int REFERENCES customers, card_no varchar(19) UNIQUE,\n\
           cvv char(3), pin_offset char(4), status text DEFAULT 'active');\n\
         CREATE TABLE customer_credentials (customer_id int PRIMARY KEY REFERENCES customers, password_hash text, security_answer text);\n\
         CREATE SCHEMA payments;\n\
         CREATE TABLE payments.cards (id serial PRIMARY KEY, pan varchar(19), cardholder_name text, expiry char(5),\n\
           cvv2 char(3), pin_block text, track_data text);\n\
         CREATE TABLE payments.authorizations (id serial PRIMARY KEY, pan varchar(19), amount numeric(12,2), merchant text, at timestamptz DEFAULT now());\n",
    );
    sql.push_str("COPY customers (full_name, id_number, mobile, email, address, birth_date, annual_income, branch) FROM stdin;\n");
    let mut pans = Vec::new();
    for i in 0..customers {
        let name = format!(
            "{}{}{}",
            rng.pick(&surnames),
            rng.pick(&given),
            if rng.below(2) == 0 {
                rng.pick(&given)
            } else {
                ""
            }
        );
        let (code, city, road) = places[rng.below(places.len() as u64) as usize];
        let (y, m, d) = (1950 + rng.below(55), 1 + rng.below(12), 1 + rng.below(28));
        let first17 = format!("{code}{y:04}{m:02}{d:02}{:03}", rng.below(1000));
        let id_number = format!("{first17}{}", id_check(&first17));
        let mobile = format!("1{}{:09}", 3 + rng.below(7), rng.below(1_000_000_000));
        let email = format!("user{i}@example.com");
        let address = format!("{city}{road}{}号", 1 + rng.below(300));
        let income = 20_000 + rng.below(480_000);
        sql.push_str(&format!(
            "{name}\t{id_number}\t{mobile}\t{email}\t{address}\t{y:04}-{m:02}-{d:02}\t{income}.00\t{city}\n"
        ));
        let bin = rng.pick(&bins);
        let pan = luhn_complete(&format!("{bin}{:012}", rng.below(1_000_000_000_000)));
        pans.push((i + 1, pan, name));
    }
    sql.push_str("\\.\n");
    sql.push_str("COPY cards (customer_id, card_no, cvv, pin_offset) FROM stdin;\n");
    for (id, pan, _) in &pans {
        sql.push_str(&format!(
            "{id}\t{pan}\t{:03}\t{:04}\n",
            rng.below(1000),
            rng.below(10000)
        ));
    }
    sql.push_str("\\.\n");
    sql.push_str(
        "COPY customer_credentials (customer_id, password_hash, security_answer) FROM stdin;\n",
    );
    for (id, _, _) in &pans {
        sql.push_str(&format!(
            "{id}\tscrypt${:016x}\tanswer-{}\n",
            rng.next(),
            rng.below(100)
        ));
    }
    sql.push_str("\\.\n");
    sql.push_str("COPY payments.cards (pan, cardholder_name, expiry, cvv2, pin_block, track_data) FROM stdin;\n");
    for (_, pan, name) in &pans {
        sql.push_str(&format!(
            "{pan}\t{name}\t{:02}/{:02}\t{:03}\t{:016X}\t;{pan}=2912101000000000?\n",
            1 + rng.below(12),
            27 + rng.below(5),
            rng.below(1000),
            rng.next()
        ));
    }
    sql.push_str("\\.\n");
    sql.push_str("INSERT INTO payments.authorizations (pan, amount, merchant) SELECT pan, (random()*1000)::numeric(12,2), 'merchant-' || id FROM payments.cards;\n");
    for role in ROLES {
        sql.push_str(&format!("CREATE ROLE {role} LOGIN PASSWORD '{role}';\n"));
    }
    sql.push_str(
        "GRANT USAGE ON SCHEMA payments TO PUBLIC;\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, payments TO PUBLIC;\n\
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public, payments TO PUBLIC;\n\
         CREATE VIEW customer_overview AS SELECT c.id, c.full_name, c.mobile, c.branch, count(k.id) AS cards\n\
           FROM customers c LEFT JOIN cards k ON k.customer_id = c.id GROUP BY c.id;\n\
         GRANT SELECT ON customer_overview TO PUBLIC;\n\
         ANALYZE;\n",
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identifiers_pass_their_checksums() {
        assert_eq!(id_check("11010519491231002"), 'X');
        assert_eq!(luhn_complete("622202123456789012"), "6222021234567890128");
        let sql = demo_sql(20);
        let ids: Vec<&str> = sql
            .lines()
            .filter_map(|l| l.split('\t').nth(1))
            .filter(|f| f.len() == 18)
            .collect();
        assert!(ids.len() >= 20);
        for id in ids {
            assert!(
                crate::mask::detect::check(crate::mask::detect::Kind::CnIdCard, id).is_some(),
                "{id}"
            );
        }
    }
}
